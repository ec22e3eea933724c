#!/bin/sh
# Guest: Fig. 9 for dfuse again and again; when a task blocks, dump every
# task's kernel stack (sysrq w, and /proc/PID/stack of the FUSE users).
cd /work/ci || exit 1
echo 30 > /proc/sys/kernel/hung_task_timeout_secs
for i in 1 2 3 4 5 6 7 8; do
  env DFUSE_FUSE_DEVICE=/dev/dfuse tools/dfuse-reproduce --net inprocess --profile quick \
    --figures fig9 --modes dfuse --build-dir /work/ci/build --keep-going --out scratch \
    --run hang-$i &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    sleep 5
    if dmesg | grep -q "blocked for more than"; then
      echo w > /proc/sysrq-trigger
      sleep 3
      dmesg > scratch/hang-dmesg-$i.txt
      for t in /proc/[0-9]*; do
        c=$(cat $t/comm 2>/dev/null)
        case "$c" in dfuse*|fio*) echo "== $t $c $(cat $t/wchan 2>/dev/null)"; for th in $t/task/*; do echo "-- $th $(cat $th/comm)"; cat $th/stack; done;; esac
      done > scratch/hang-stacks-$i.txt 2>&1
      echo "hang caught in run $i"
      exit 1
    fi
  done
done
echo "no hang in 8 runs"
