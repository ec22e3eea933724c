// Checks a whole history: splits it by (file, block) into registers, checks
// each one (in parallel, they are independent) and summarises the result in
// the report that `dfuse-checker` writes.
#ifndef DFUSE_WORKLOADS_CONSISTENCY_CHECKER_H_
#define DFUSE_WORKLOADS_CONSISTENCY_CHECKER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "workloads/consistency/history.h"
#include "workloads/consistency/register_check.h"

namespace dfuse::checker {

struct CheckOptions {
  // Per register. A linearizable register needs about (operations x
  // overlapping operations) steps, so this leaves a wide margin at 100k ops.
  uint64_t step_budget = 10'000'000;
  size_t max_reported = 20;  // violating registers listed in full
  unsigned threads = 0;      // 0: one per core
};

struct RegisterSummary {
  uint32_t file = 0;
  uint32_t block = 0;
  size_t reads = 0;
  size_t writes = 0;
  size_t torn_reads = 0;
  size_t local_torn_reads = 0;                    // see RegisterResult
  Verdict verdict = Verdict::kLinearizable;       // see RegisterResult
  Verdict linearizable = Verdict::kLinearizable;  // torn reads aside
  uint64_t steps = 0;
};

struct Violation {
  uint32_t file = 0;
  uint32_t block = 0;
  std::vector<Op> history;  // minimal offending history, by invocation time
};

struct Report {
  size_t operations = 0;
  size_t reads = 0;
  size_t writes = 0;
  size_t failed = 0;  // syscalls that returned an error or a short write
  size_t registers = 0;
  size_t violations = 0;  // registers proven non-linearizable or with torn reads
  // Registers whose operations are not linearizable even with torn reads
  // left out: stale or out-of-order values rather than mixed blocks.
  size_t non_linearizable = 0;
  size_t unknown = 0;  // registers whose search ran out of budget
  size_t torn_reads = 0;
  // Torn reads a write from the reader's own node overlapped: the local
  // kernel's page cache, not the file system (RegisterResult).
  size_t local_torn_reads = 0;
  std::vector<RegisterSummary> per_register;
  std::vector<Violation> violating;  // the first max_reported, by register
  double seconds = 0;                // time the check took
};

Report CheckHistory(const std::vector<Op>& ops, const CheckOptions& options);

nlohmann::json ReportToJson(const Report& report);

}  // namespace dfuse::checker

#endif  // DFUSE_WORKLOADS_CONSISTENCY_CHECKER_H_
