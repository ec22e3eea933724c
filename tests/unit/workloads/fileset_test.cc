#include "workloads/personalities/fileset.h"

#include <map>
#include <set>

#include <gtest/gtest.h>

namespace dfuse::personality {
namespace {

TEST(FilesetLayoutTest, SmallFilesetIsOneLevel) {
  FilesetLayout l("/r", 30, 20);
  EXPECT_EQ(l.leaf_dirs(), 2u);
  EXPECT_EQ(l.FilePath(0), "/r/d0/f0");
  EXPECT_EQ(l.FilePath(19), "/r/d0/f19");
  EXPECT_EQ(l.FilePath(20), "/r/d1/f20");
  EXPECT_EQ(l.Directories(), (std::vector<std::string>{"/r/d0", "/r/d1"}));
}

TEST(FilesetLayoutTest, NoDirectoryHoldsMoreThanWidthEntries) {
  // 10,000 files at width 20: 500 leaves, more than 20 * 20, so three
  // levels of directories.
  FilesetLayout l("/r", 10000, 20);
  EXPECT_EQ(l.FilePath(0), "/r/d0/d0/d0/f0");
  EXPECT_EQ(l.FilePath(9999), "/r/d1/d4/d19/f9999");
  std::map<std::string, std::set<std::string>> children;
  for (size_t i = 0; i < l.files(); i++) {
    const std::string p = l.FilePath(i);
    for (size_t pos = p.rfind('/'); pos > 2; pos = p.rfind('/', pos - 1)) {
      const std::string parent = p.substr(0, pos);
      const size_t next = p.find('/', pos + 1);
      children[parent].insert(p.substr(0, next));
    }
  }
  for (const auto& [dir, kids] : children) EXPECT_LE(kids.size(), 20u) << dir;
  const std::vector<std::string> dirs = l.Directories();
  EXPECT_EQ(dirs.size(), 2u + 25u + 500u);
  // Parents come before their children, so they can be made in order.
  std::set<std::string> made{"/r"};
  for (const std::string& d : dirs) {
    EXPECT_TRUE(made.count(d.substr(0, d.rfind('/')))) << d;
    made.insert(d);
  }
}

TEST(FilesetViewTest, TakenFilesAreOutOfCirculation) {
  FilesetView v({true, false});
  std::mt19937_64 rng(1);
  EXPECT_EQ(v.TakeExisting(rng), 0u);
  EXPECT_EQ(v.TakeExisting(rng), std::nullopt);
  EXPECT_EQ(v.PickExisting(rng), std::nullopt);
  EXPECT_EQ(v.TakeAbsent(rng), 1u);
  v.Return(0, false);
  v.Return(1, true);
  EXPECT_EQ(v.PickExisting(rng), 1u);
  EXPECT_EQ(v.TakeAbsent(rng), 0u);
  EXPECT_EQ(v.present(), 1u);
}

TEST(FilesetViewTest, MarkAbsentFollowsOtherNodesDeletes) {
  FilesetView v({true, true, true});
  std::mt19937_64 rng(2);
  v.MarkAbsent(1);
  v.MarkAbsent(1);
  EXPECT_EQ(v.present(), 2u);
  for (int i = 0; i < 50; i++) EXPECT_NE(v.PickExisting(rng), 1u);
}

}  // namespace
}  // namespace dfuse::personality
