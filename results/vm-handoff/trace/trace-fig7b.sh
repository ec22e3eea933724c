#!/bin/sh
# Runs in the dfuse-vm guest: Fig. 7 (dfuse only) with the kernel's lease
# release and upcall functions traced by function_graph.
set -e
OUT=scratch/trace-$1
mkdir -p $OUT
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T
echo 0 > $T/tracing_on
echo mono > $T/trace_clock
echo function_graph > $T/current_tracer
printf '%s\n' dfuse_lease_release dfuse_lease_linger dfuse_write_back invalidate_inode_pages2 \
  dfuse_lease_upcall sync_inode_metadata filemap_fdatawrite filemap_fdatawait_keep_errors fuse_file_read_iter fuse_file_write_iter dfuse_lease_enter dfuse_lease_exit fuse_simple_request fuse_do_getattr fuse_read_folio fuse_readahead fuse_getxattr balance_dirty_pages_ratelimited_flags fuse_open fuse_flush fuse_release \
  > $T/set_ftrace_filter
echo funcgraph-abstime > $T/trace_options
echo funcgraph-proc > $T/trace_options
echo 131072 > $T/buffer_size_kb
echo 1 > $T/tracing_on
(while :; do echo "T $(cut -d" " -f1 /proc/uptime)"; cat /proc/loadavg; head -1 /proc/stat; ps -e -o pid=,comm=,times=; sleep 2; done) > $OUT/load.txt &
S=$!
tools/dfuse-reproduce --net inprocess --profile quick --figures fig7 --modes ${2:-dfuse} \
  --keep-going --out scratch --run run-$1 || true
kill $S
echo 0 > $T/tracing_on
cat $T/trace > $OUT/trace.txt
cat $T/per_cpu/cpu*/stats > $OUT/trace-stats.txt
