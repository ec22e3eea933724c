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

}  // namespace
}  // namespace dfuse
