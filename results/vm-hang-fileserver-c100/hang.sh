#!/bin/sh
# Guest: Fig. 9 for dfuse again and again; when a task blocks, dump every
# task's kernel stack (sysrq w, and /proc/PID/stack of the FUSE users) and
# every daemon's, lease manager's and storage service's stats with their
# state (SIGUSR1: who waits for which lease, the agents' job queues, the
# manager's holders, waiters and unanswered revokes).
# Usage: hang.sh [RUNS]; MATRIX=FILE runs another matrix (one with only
# fileserver at 100 % tries that point six times as often), REPEATS=N
# repeats each point N times in a run (one cluster start-up for all).
cd /work/ci || exit 1
echo 30 > /proc/sys/kernel/hung_task_timeout_secs
runs=${1:-8}
i=1
while [ "$i" -le "$runs" ]; do
  env DFUSE_FUSE_DEVICE=/dev/dfuse tools/dfuse-reproduce --net inprocess --profile quick \
    --figures fig9 --modes dfuse ${MATRIX:+--matrix $MATRIX} ${REPEATS:+--repeats $REPEATS} --build-dir /work/ci/build --keep-going --out scratch \
    --run hang-$i &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    sleep 5
    if dmesg | grep -q "blocked for more than"; then
      echo w > /proc/sysrq-trigger
      mkdir -p scratch/hang-$i-state
      for t in /proc/[0-9]*; do
        stats=$(tr '\0' '\n' < $t/cmdline 2>/dev/null | sed -n '/^--stats$/{n;p;q}')
        [ -n "$stats" ] || continue
        kill -USR1 "${t#/proc/}" && echo "${t#/proc/} $(cat $t/comm) $stats"
      done > scratch/hang-$i-state/processes.txt
      sleep 3
      while read -r p comm stats; do
        cp "$stats" "scratch/hang-$i-state/$comm-$p.json"
      done < scratch/hang-$i-state/processes.txt
      dmesg > scratch/hang-dmesg-$i.txt
      for t in /proc/[0-9]*; do
        c=$(cat $t/comm 2>/dev/null)
        case "$c" in dfuse*|fio*) echo "== $t $c $(cat $t/wchan 2>/dev/null)"; for th in $t/task/*; do echo "-- $th $(cat $th/comm)"; cat $th/stack; done;; esac
      done > scratch/hang-stacks-$i.txt 2>&1
      echo "hang caught in run $i"
      exit 1
    fi
  done
  i=$((i + 1))
done
echo "no hang in $runs runs"
