// ExtentSet: sorted, merged, bounded ranges that only ever grow to cover
// more.
#include "util/extent_set.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace dfuse {
namespace {

using Range = ExtentSet::Range;

TEST(ExtentSetTest, MergesWhatOverlapsOrTouches) {
  ExtentSet s(8);
  s.Add(10, 20);
  s.Add(30, 40);
  s.Add(5, 5);  // empty
  EXPECT_EQ(s.ranges(), (std::vector<Range>{{10, 20}, {30, 40}}));
  s.Add(20, 25);  // touches the first
  s.Add(28, 31);  // overlaps the second
  EXPECT_EQ(s.ranges(), (std::vector<Range>{{10, 25}, {28, 40}}));
  s.Add(0, 100);  // swallows both
  EXPECT_EQ(s.ranges(), (std::vector<Range>{{0, 100}}));
  s.Add(200, ExtentSet::kToEnd);
  s.Add(150, 160);
  EXPECT_EQ(s.ranges(), (std::vector<Range>{{0, 100}, {150, 160}, {200, ExtentSet::kToEnd}}));
  s.Clear();
  EXPECT_TRUE(s.empty());
}

TEST(ExtentSetTest, PastItsBoundClosesTheSmallestGap) {
  ExtentSet s(2);
  s.Add(0, 10);
  s.Add(100, 110);
  s.Add(15, 20);  // the gap 10..15 is the smallest
  EXPECT_EQ(s.ranges(), (std::vector<Range>{{0, 20}, {100, 110}}));
}

TEST(ExtentSetTest, EveryByteAddedStaysCovered) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; round++) {
    ExtentSet s(4);
    std::vector<Range> added;
    for (int i = 0; i < 40; i++) {
      const uint64_t start = rng() % 10000;
      const uint64_t end = start + 1 + rng() % 50;
      s.Add(start, end);
      added.push_back({start, end});
    }
    ASSERT_LE(s.ranges().size(), 4u);
    for (size_t i = 1; i < s.ranges().size(); i++) {
      ASSERT_LT(s.ranges()[i - 1].end, s.ranges()[i].start) << "sorted and apart";
    }
    for (const Range& a : added) {
      bool covered = false;
      for (const Range& r : s.ranges()) covered |= r.start <= a.start && a.end <= r.end;
      ASSERT_TRUE(covered) << a.start << ".." << a.end;
    }
  }
}

}  // namespace
}  // namespace dfuse
