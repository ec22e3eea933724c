#include "workloads/consistency/merge.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "tests/unit/checker/history_builder.h"
#include "workloads/consistency/checker.h"

namespace dfuse::checker {
namespace {

using testing::R;
using testing::W;

size_t Violations(const std::vector<Op>& ops) { return CheckHistory(ops, {}).violations; }

TEST(MergeHistories, AStaleReadOnAnotherHostIsFoundWhenTheBoundIsTight) {
  // Host A writes 7 during [0, 10]; host B reads the initial 0 at [30, 40],
  // its clock known to within 5 ns of A's: the read began after the write
  // had returned, whatever the offset was.
  const std::vector<Op> merged =
      MergeHistories({{W(0, 7, 0, 10)}, {R(1, 0, 30, 40)}}, {{0, 0}, {-5, 5}});
  EXPECT_EQ(Violations(merged), 1u);
}

TEST(MergeHistories, AWideBoundMakesCloseOperationsConcurrent) {
  // With B's clock known only to within 20 ns, the read may have begun at
  // 10, when the write returned: no longer a provable violation.
  const std::vector<Op> merged =
      MergeHistories({{W(0, 7, 0, 10)}, {R(1, 0, 30, 40)}}, {{0, 0}, {-20, 20}});
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[1].invoke_ns, 10);
  EXPECT_EQ(merged[1].return_ns, 60);
  EXPECT_EQ(Violations(merged), 0u);
}

TEST(MergeHistories, AHostClockAheadIsMovedBackOntoTheReference) {
  // B's clock runs 100 ns ahead: its read stamped [105, 108] ran at [5, 8],
  // during the write, so reading the old value is fine. Taken at face value
  // (one clock) the same two histories look like a stale read.
  std::vector<std::vector<Op>> parts = {{W(0, 7, 0, 10)}, {R(1, 0, 105, 108)}};
  EXPECT_EQ(Violations(MergeHistories(parts, {})), 1u);
  const std::vector<Op> merged = MergeHistories(parts, {{0, 0}, {100, 100}});
  EXPECT_EQ(merged[1].invoke_ns, 5);
  EXPECT_EQ(merged[1].return_ns, 8);
  EXPECT_EQ(Violations(merged), 0u);
}

TEST(MergeHistories, SortsByInvocationAcrossParts) {
  const std::vector<Op> merged =
      MergeHistories({{W(0, 1, 20, 30), W(0, 2, 40, 50)}, {R(1, 1, 35, 36)}}, {});
  ASSERT_EQ(merged.size(), 3u);
  EXPECT_EQ(merged[0].value, 1u);
  EXPECT_FALSE(merged[1].is_write());
  EXPECT_EQ(merged[2].value, 2u);
}

TEST(MergeHistories, AProcessInTwoPartsIsAnError) {
  // Two hosts that both numbered their workers from 0 also wrote the same
  // values: the merged history would be meaningless.
  EXPECT_THROW(MergeHistories({{W(0, 1, 0, 1)}, {W(0, 2, 2, 3)}}, {}), std::runtime_error);
}

TEST(MergeHistories, BoundsMustMatchTheParts) {
  EXPECT_THROW(MergeHistories({{W(0, 1, 0, 1)}, {W(1, 2, 2, 3)}}, {{0, 0}}), std::runtime_error);
}

TEST(ParseClockBound, AcceptsMinColonMax) {
  const ClockBound b = ParseClockBound("-1500:2500");
  EXPECT_EQ(b.min_offset_ns, -1500);
  EXPECT_EQ(b.max_offset_ns, 2500);
}

TEST(ParseClockBound, RejectsMalformedText) {
  for (const char* bad : {"", "5", "a:b", "1:2x", "2:1", ":3", "1:"}) {
    EXPECT_THROW(ParseClockBound(bad), std::runtime_error) << bad;
  }
}

}  // namespace
}  // namespace dfuse::checker
