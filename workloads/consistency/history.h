// A history is what the checker sees of a run: one Op per read or write a
// worker issued, with the times it was invoked and returned.
//
// Every block of every shared file is modelled as a read/write register whose
// initial value is 0. Workers write unique non-zero 64-bit values, repeated
// through the whole block, so a read names exactly one write (or the initial
// value), and a block mixing two values ("torn") is caught on sight.
//
// On disk a history is JSON Lines, one Op per line, e.g.
//   {"process":3,"node":1,"kind":"write","file":0,"block":5,"value":...,
//    "invoke_ns":...,"return_ns":...}
// with "torn":true on torn reads and "ok":false on failed syscalls. Times are
// CLOCK_MONOTONIC nanoseconds; all processes of a run share the clock, so
// real-time order between any two ops is exact. A run on one host of several
// uses CLOCK_REALTIME instead, and its history is merged with the others'
// within measured clock bounds (merge.h).
#ifndef DFUSE_WORKLOADS_CONSISTENCY_HISTORY_H_
#define DFUSE_WORKLOADS_CONSISTENCY_HISTORY_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dfuse::checker {

enum class OpKind : uint8_t { kRead, kWrite };

struct Op {
  uint32_t process = 0;  // worker id, unique across nodes
  uint32_t node = 0;     // index of the mount the worker used
  OpKind kind = OpKind::kRead;
  uint32_t file = 0;
  uint32_t block = 0;
  uint64_t value = 0;  // written, or read (first word when torn)
  bool torn = false;   // read only: the block held more than one value
  // False when the syscall failed. A failed read tells nothing and is
  // ignored; a failed write may or may not have taken effect, so it is
  // treated as never returning.
  bool ok = true;
  int64_t invoke_ns = 0;
  int64_t return_ns = 0;

  bool is_write() const { return kind == OpKind::kWrite; }
};

nlohmann::json OpToJson(const Op& op);
// Throws std::runtime_error (with the reason) on a malformed object.
Op OpFromJson(const nlohmann::json& j);

void WriteHistory(std::ostream& out, const std::vector<Op>& ops);
// Throws std::runtime_error naming the offending line.
std::vector<Op> ReadHistory(std::istream& in);

}  // namespace dfuse::checker

#endif  // DFUSE_WORKLOADS_CONSISTENCY_HISTORY_H_
