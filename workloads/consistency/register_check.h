// Linearizability of a single read/write register (one block of one file).
//
// The checker relies on P-compositionality: a history is linearizable iff
// its projection onto each register is, so every block is checked on its own
// and the search never sees more than one block's operations.
//
// SearchRegister is the Wing–Gong algorithm with Lowe's memoisation, as in
// Porcupine: calls and returns sorted by time in a linked list; repeatedly
// linearize a pending call whose effect the register allows, backtrack when a
// return is reached whose call is not yet linearized, and skip any
// (linearized set, register value) configuration seen before. Its cost is
// exponential only in the number of operations that overlap in time, and it
// is bounded by a step budget: past it the answer is kUnknown, never a pass.
//
// Because workers write unique non-zero values, many violations have a
// two- or three-operation witness that FindSimpleWitness finds in
// O(n log n) time; the search remains the authority for everything else.
#ifndef DFUSE_WORKLOADS_CONSISTENCY_REGISTER_CHECK_H_
#define DFUSE_WORKLOADS_CONSISTENCY_REGISTER_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "workloads/consistency/history.h"

namespace dfuse::checker {

enum class Verdict : uint8_t { kLinearizable, kViolation, kUnknown };

const char* VerdictName(Verdict v);

struct SearchResult {
  Verdict verdict = Verdict::kLinearizable;
  uint64_t steps = 0;
};

// `ops` are one register's operations: successful reads with a decoded value
// and writes (a failed write, ok == false, is treated as never returning, so
// it may take effect any time after its invocation). Torn reads must not be
// passed; they carry no value. Written values need not be unique here.
SearchResult SearchRegister(const std::vector<Op>& ops, uint64_t step_budget);

// True when every write has a distinct non-zero value: the precondition of
// FindSimpleWitness and of the shrinker's closure rule.
bool WritesAreUnique(const std::vector<Op>& ops);

// Indices into `ops` of a small non-linearizable sub-history, or empty if
// none of these patterns occurs (which proves nothing). Requires
// WritesAreUnique(ops). The patterns, each a proof on its own:
//  * a read of a value nobody wrote;
//  * a read that returned before the write of its value was invoked;
//  * a read of 0 invoked after some write returned (0 is never written
//    again, so once any write is linearized the register is never 0);
//  * a stale read: it returns v, yet some write w2 was invoked after v's
//    write returned and returned before the read was invoked, so w2 must be
//    linearized between them.
std::vector<size_t> FindSimpleWitness(const std::vector<Op>& ops);

// True if `ops` is provably not linearizable (a simple witness or the
// search), false if linearizable or if the search ran out of budget.
bool IsViolation(const std::vector<Op>& ops, uint64_t step_budget);

// Delta debugging: shrinks a non-linearizable history to a sub-history that
// is still non-linearizable and from which no single operation can be
// removed without making it linearizable. Removing a write also removes the
// reads of its value; that keeps every candidate "read-closed", and a
// read-closed sub-history of a linearizable history is itself linearizable,
// so the result is a genuine witness against the whole history. Requires
// WritesAreUnique(ops). Gives up refining (returning a still-violating, not
// necessarily minimal, history) after `total_budget` search steps.
std::vector<Op> Shrink(std::vector<Op> ops, uint64_t step_budget, uint64_t total_budget);

struct RegisterResult {
  // Violation if the reads that were not torn are not linearizable, or if
  // any read was torn.
  Verdict verdict = Verdict::kLinearizable;
  // The verdict on the operations other than torn reads alone.
  Verdict linearizable = Verdict::kLinearizable;
  uint64_t steps = 0;  // search steps, 0 when a simple witness decided
  size_t torn_reads = 0;
  // Torn reads that a write to the block from the reader's own node
  // overlapped in time. Linux does not make a buffered read of a page atomic
  // against a write of it on the same machine (ext4 and tmpfs tear the same
  // way), so these are the local kernel's doing; a torn read no local write
  // overlapped can only have come from the file system.
  size_t local_torn_reads = 0;
  // On a violation, the minimal offending history: from the linearizability
  // check if that failed, otherwise the first torn read no local write
  // explains, or else the first torn read.
  std::vector<Op> witness;
};

// The full verdict for one register's operations, as recorded (failed reads
// are dropped, a torn read is a violation by itself).
RegisterResult CheckRegister(const std::vector<Op>& ops, uint64_t step_budget);

}  // namespace dfuse::checker

#endif  // DFUSE_WORKLOADS_CONSISTENCY_REGISTER_CHECK_H_
