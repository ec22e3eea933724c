// Filebench-style personalities (fileserver, webserver, netsfs) as the
// project's own workload: filebench is not packaged for Debian. Each thread
// loops over its personality's flowops on a fileset for a fixed time; one
// op is one flowop including its open and close, timed end to end.
#ifndef DFUSE_WORKLOADS_PERSONALITIES_PERSONALITY_H_
#define DFUSE_WORKLOADS_PERSONALITIES_PERSONALITY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dfuse::personality {

enum class Flowop {
  kCreate,     // create an absent file and write it whole
  kWriteWhole, // overwrite an existing file from offset 0, whole
  kAppend,     // append a random amount (mean: append_size) to an existing file
  kReadWhole,  // read an existing file to its end
  kDelete,     // unlink an existing file
  kStat,       // stat an existing file
  kListDir,    // list a random leaf directory
  kAppendLog,  // append a random amount to the shared log file
};
const char* FlowopName(Flowop op);
bool IsRead(Flowop op);
bool IsWrite(Flowop op);

struct Personality {
  std::string name;
  size_t files;          // Table 2 of the paper
  size_t dir_width;      // Table 2
  uint64_t file_size;    // bytes; Table 2
  int prealloc_percent;  // share of files created before the run
  uint64_t io_size;      // bytes per read(2)/write(2)
  uint64_t append_size;  // mean bytes per append
  std::vector<Flowop> loop;
};

// The three personalities with the paper's parameters; nullptr if unknown.
const Personality* FindPersonality(const std::string& name);
std::vector<std::string> PersonalityNames();

struct RunOptions {
  std::string dir;  // fileset root (created by CreateFileset)
  size_t files = 0;
  size_t dir_width = 0;
  uint64_t file_size = 0;
  int threads = 4;
  double seconds = 10;
  uint64_t seed = 1;
  std::string log_name = "log";  // kAppendLog's file, under dir
  // Which files exist at the start (index i: file i); when empty, RunWorkload
  // stats every file to find out. A harness gets it from PresentFiles on the
  // storage host, so the clients' counters hold the measured phase alone.
  std::vector<bool> present;
};

// Options with the personality's defaults for every field left at zero.
RunOptions WithDefaults(const Personality& p, RunOptions o);

// Lays out the fileset under o.dir: directories, prealloc_percent of the
// files at full size, and the log file. Returns the number of files made.
size_t CreateFileset(const Personality& p, const RunOptions& o);

// Which of the fileset's files exist, as text for RunOptions::present: one
// hex digit per four files, file i in bit i % 4 of digit i / 4.
std::string PresentFiles(const RunOptions& o);
// The inverse for `files` files; throws std::invalid_argument, naming the
// problem, on a wrong length or a character that is not a hex digit.
std::vector<bool> ParsePresent(const std::string& text, size_t files);

// Runs the personality's loop on o.threads threads for o.seconds and returns
// the summary: ops and bytes by flowop, throughput (MB/s, 10^6), mean latency
// (ms per op), and races (a file another thread, or another node sharing the
// fileset, created or deleted first), which are counted, not failed. Any
// other I/O error throws.
nlohmann::json RunWorkload(const Personality& p, const RunOptions& o);

}  // namespace dfuse::personality

#endif  // DFUSE_WORKLOADS_PERSONALITIES_PERSONALITY_H_
