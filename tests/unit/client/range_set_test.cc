#include "impl/common/range_set.h"

#include <gtest/gtest.h>

namespace dfuse {
namespace {

using Ranges = std::vector<RangeSet::Range>;

TEST(RangeSetTest, AddMergesOverlappingAndAdjacent) {
  RangeSet s;
  s.Add(10, 20);
  s.Add(30, 40);
  EXPECT_EQ(s.ranges(), (Ranges{{10, 20}, {30, 40}}));
  s.Add(20, 30);  // adjacent on both sides
  EXPECT_EQ(s.ranges(), (Ranges{{10, 40}}));
  s.Add(0, 5);
  s.Add(3, 12);
  EXPECT_EQ(s.ranges(), (Ranges{{0, 40}}));
  s.Add(7, 7);  // empty: no-op
  EXPECT_EQ(s.ranges(), (Ranges{{0, 40}}));
}

TEST(RangeSetTest, CoversAndGaps) {
  RangeSet s;
  s.Add(100, 200);
  s.Add(300, 4096);
  EXPECT_TRUE(s.Covers(100, 200));
  EXPECT_TRUE(s.Covers(150, 160));
  EXPECT_FALSE(s.Covers(150, 250));
  EXPECT_FALSE(s.Covers(0, 4096));
  EXPECT_EQ(s.Gaps(4096), (Ranges{{0, 100}, {200, 300}}));
  EXPECT_EQ(s.End(), 4096u);
}

TEST(RangeSetTest, TrimAbove) {
  RangeSet s;
  s.Add(0, 10);
  s.Add(20, 30);
  s.TrimAbove(25);
  EXPECT_EQ(s.ranges(), (Ranges{{0, 10}, {20, 25}}));
  s.TrimAbove(15);
  EXPECT_EQ(s.ranges(), (Ranges{{0, 10}}));
  s.TrimAbove(0);
  EXPECT_TRUE(s.empty());
}

TEST(RangeSetTest, OverlapOfFileRanges) {
  FileRangeSet s;
  const uint64_t big = uint64_t{1} << 40;  // past what a page's set holds
  s.Add(0, 4096);
  s.Add(big, big + 8192);
  using FileRanges = std::vector<FileRangeSet::Range>;
  EXPECT_EQ(s.Overlap(2048, big + 4096), (FileRanges{{2048, 4096}, {big, big + 4096}}));
  EXPECT_EQ(s.Overlap(4096, big), FileRanges{});
  EXPECT_EQ(s.Overlap(0, 0), FileRanges{});
}

}  // namespace
}  // namespace dfuse
