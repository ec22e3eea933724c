// Histories recorded on several hosts, each stamped with its own host's
// clock, merged into one history on one reference clock.
//
// No two clocks agree exactly, so a host's times are not moved by a guess of
// its offset but widened by everything the offset might be: if the host's
// clock minus the reference clock lies within [min_offset_ns, max_offset_ns]
// throughout the run, an operation stamped [invoke, return] on the host ran
// within [invoke - max_offset_ns, return - min_offset_ns] on the reference
// clock. Widening only removes real-time orderings the checker may rely on,
// never adds one, so a violation found in the merged history is a violation
// of the real run; the price is that operations closer than the bound's
// width count as concurrent, so some stale reads go unseen.
#ifndef DFUSE_WORKLOADS_CONSISTENCY_MERGE_H_
#define DFUSE_WORKLOADS_CONSISTENCY_MERGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "workloads/consistency/history.h"

namespace dfuse::checker {

// Where a host's clock may be relative to the reference clock.
struct ClockBound {
  int64_t min_offset_ns = 0;
  int64_t max_offset_ns = 0;
};

// Parses "MIN:MAX" (nanoseconds, MIN <= MAX). Throws std::runtime_error.
ClockBound ParseClockBound(const std::string& text);

// Widens each part's operations by its bound (bounds empty: all parts are on
// one clock already) and merges them by invocation time. Throws
// std::runtime_error if a process appears in two parts (their runs were not
// given distinct --first-node values, so values and ids would collide) or if
// the bounds do not match the parts.
std::vector<Op> MergeHistories(std::vector<std::vector<Op>> parts,
                               const std::vector<ClockBound>& bounds);

}  // namespace dfuse::checker

#endif  // DFUSE_WORKLOADS_CONSISTENCY_MERGE_H_
