// The workload half of dfuse-checker: worker processes on one or more mounts
// of the same file system read and write whole blocks of shared files and
// record each operation's invoke and return times.
//
// Each worker opens the files on its mount once and keeps them open, so the
// history tests cross-node consistency of already-open files (no close/open
// revalidation to hide behind). I/O is buffered, as an application does it:
// no O_DIRECT, no fsync.
#ifndef DFUSE_WORKLOADS_CONSISTENCY_WORKLOAD_H_
#define DFUSE_WORKLOADS_CONSISTENCY_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "workloads/consistency/history.h"

namespace dfuse::checker {

struct RunOptions {
  std::vector<std::string> mounts;  // one per client node, all the same file system
  unsigned procs = 3;               // per mount
  uint64_t ops = 100000;            // in total, split evenly between workers
  uint32_t files = 2;
  uint32_t blocks = 8;  // per file
  uint32_t block_size = 4096;
  double write_ratio = 0.5;
  uint64_t seed = 0;
  double duration_limit = 0;  // seconds; 0: none. Workers stop early past it.
  bool progress = true;       // a line on stderr at most once a second
  // One run per host, their histories merged later (merge.h): this run's
  // mounts are nodes first_node, first_node + 1, ..., and its workers are
  // numbered from first_node * procs, so ids and written values are unique
  // across hosts that use the same procs.
  uint32_t first_node = 0;
  bool create_files = true;  // false: another run (`prepare`) made them
  // Operations are stamped with CLOCK_MONOTONIC, exact on one host; a run
  // whose history is merged with other hosts' needs CLOCK_REALTIME, which
  // the hosts keep close (NTP) and whose offsets can be measured.
  bool realtime_clock = false;
  // Runs on several hosts start together: each worker opens its files, then
  // waits for this CLOCK_REALTIME time (ns since the epoch; 0 or past: at
  // once). Runs started one after another would otherwise barely overlap.
  int64_t start_at_ns = 0;
};

struct RunResult {
  std::vector<Op> history;  // by invocation time
  bool stopped_early = false;
  double seconds = 0;
};

// Name of shared file `i` in the root of every mount.
std::string SharedFileName(uint32_t i);

// Creates (or empties) the shared files through the first mount: every
// block holds the initial value 0, made durable before any worker starts.
void CreateFiles(const RunOptions& options);

// Creates the shared files (unless !create_files), runs the workers and
// collects their histories. Throws std::runtime_error with a one-line reason
// on setup or I/O failures (a missing mount, a worker that could not open
// its files or did not stop).
RunResult RunWorkload(const RunOptions& options);

}  // namespace dfuse::checker

#endif  // DFUSE_WORKLOADS_CONSISTENCY_WORKLOAD_H_
