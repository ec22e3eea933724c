// DirAliases: a directory seen under a new name has its old entry dropped
// from the kernel, off the request path, and replies can wait for that.
#include "impl/common/dir_aliases.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace dfuse {
namespace {

using std::chrono::milliseconds;

// Records invalidations; holds each one until released when `gated`.
class FakeKernel {
 public:
  explicit FakeKernel(bool gated = false) : gated_(gated) {}

  DirAliases::EntryInvalidator Invalidator() {
    return [this](fuse_ino_t parent, const std::string& name) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return !gated_; });
      dropped_.emplace_back(parent, name);
      cv_.notify_all();
      return 0;
    };
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    gated_ = false;
    cv_.notify_all();
  }
  std::vector<std::pair<fuse_ino_t, std::string>> WaitFor(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(10), [&] { return dropped_.size() >= n; });
    return dropped_;
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return dropped_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool gated_;
  std::vector<std::pair<fuse_ino_t, std::string>> dropped_;
};

TEST(DirAliasesTest, SameEntryAgainInvalidatesNothing) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "d");
  aliases.Seen(10, 1, "d");
  aliases.WaitSettled(10, milliseconds(1000));
  EXPECT_EQ(kernel.count(), 0u);
}

TEST(DirAliasesTest, MovedDirectoryDropsItsOldEntry) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "old");
  aliases.Seen(10, 2, "new");  // another node moved it
  aliases.WaitSettled(10, milliseconds(5000));
  const auto dropped = kernel.WaitFor(1);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0], std::make_pair(fuse_ino_t{1}, std::string("old")));
  aliases.Seen(10, 2, "new");  // where the kernel now has it: nothing more
  aliases.Seen(10, 1, "old");  // and moved back
  aliases.WaitSettled(10, milliseconds(5000));  // the invalidation is done and counted
  const auto both = kernel.WaitFor(2);
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both.back(), std::make_pair(fuse_ino_t{2}, std::string("new")));
  EXPECT_EQ(stats.GetCounter("fuse.stale_dir_alias_invalidations")->Get(), 2u);
}

// This node's own renames move the kernel's entries: a directory it moved
// and another node then moved on is dropped where this node put it.
TEST(DirAliasesTest, ADirectoryThisNodeRenamedIsDroppedWhereItPutIt) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "d");
  aliases.Seen(11, 1, "e");
  aliases.Seen(12, 2, "x");
  aliases.Renamed(1, "d", 2, "b", false);         // 10 is now 2/b
  aliases.Renamed(1, "e", 2, "x", true);          // 11 and 12 swap
  aliases.Renamed(1, "plain", 1, "file", false);  // no directory: nothing to move
  aliases.Seen(10, 3, "a");                       // another node moved 10 on
  aliases.Seen(11, 3, "c");                       // and 11
  aliases.Seen(12, 3, "f");                       // and 12
  const auto dropped = kernel.WaitFor(3);
  ASSERT_EQ(dropped.size(), 3u);
  EXPECT_EQ(dropped[0], std::make_pair(fuse_ino_t{2}, std::string("b")));
  EXPECT_EQ(dropped[1], std::make_pair(fuse_ino_t{2}, std::string("x")));
  EXPECT_EQ(dropped[2], std::make_pair(fuse_ino_t{1}, std::string("e")));
}

TEST(DirAliasesTest, ADirectoryReplacedByARenameIsForgotten) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "d");
  aliases.Seen(11, 1, "empty");
  aliases.Renamed(1, "d", 1, "empty", false);  // 11 is gone, 10 is 1/empty
  aliases.Seen(11, 4, "again");                // a new entry, not a move: nothing to drop
  aliases.Seen(10, 1, "empty");
  aliases.WaitQueuedSettled(milliseconds(1000));
  EXPECT_EQ(kernel.count(), 0u);
}

TEST(DirAliasesTest, ReplyWaitsForThePendingInvalidationUpToItsTimeout) {
  StatsRegistry stats;
  FakeKernel kernel(/*gated=*/true);
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "old");
  aliases.Seen(10, 1, "new");
  const auto start = std::chrono::steady_clock::now();
  aliases.WaitSettled(10, milliseconds(200));  // the kernel holds the invalidation
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(190));
  EXPECT_EQ(kernel.count(), 0u);
  aliases.WaitSettled(11, milliseconds(5000));  // another directory does not wait
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  kernel.Release();
  aliases.WaitSettled(10, milliseconds(5000));
  EXPECT_EQ(kernel.count(), 1u);
}

TEST(DirAliasesTest, LookupWaitsForEveryInvalidationQueuedBeforeIt) {
  StatsRegistry stats;
  FakeKernel kernel(/*gated=*/true);
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "old");
  EXPECT_FALSE(aliases.Pending(10));
  aliases.Seen(10, 2, "new");
  EXPECT_TRUE(aliases.Pending(10));
  EXPECT_FALSE(aliases.Pending(11));
  const auto start = std::chrono::steady_clock::now();
  aliases.WaitQueuedSettled(milliseconds(200));  // a lookup under the lock it needs
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(190));
  EXPECT_EQ(kernel.count(), 0u);
  // A lookup that holds no lock: the invalidation goes ahead while it waits.
  std::thread unlock([&] {
    std::this_thread::sleep_for(milliseconds(100));
    kernel.Release();
  });
  aliases.WaitQueuedSettled(milliseconds(10000));
  EXPECT_EQ(kernel.count(), 1u);
  EXPECT_FALSE(aliases.Pending(10));
  unlock.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000));
}

TEST(DirAliasesTest, LookupDoesNotWaitWithNothingQueued) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "old");
  aliases.Seen(10, 2, "new");
  kernel.WaitFor(1);
  aliases.WaitSettled(10, milliseconds(5000));
  const auto start = std::chrono::steady_clock::now();
  aliases.WaitQueuedSettled(milliseconds(5000));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
}

TEST(DirAliasesTest, ForgottenDirectoryStartsAfresh) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Start(kernel.Invalidator());
  aliases.Seen(10, 1, "old");
  aliases.Forget(10);  // the kernel dropped the inode, and with it the entry
  aliases.Seen(10, 2, "new");
  aliases.WaitSettled(10, milliseconds(1000));
  EXPECT_EQ(kernel.count(), 0u);
}

TEST(DirAliasesTest, MovesBeforeStartAreInvalidatedOnceStarted) {
  StatsRegistry stats;
  FakeKernel kernel;
  DirAliases aliases(&stats);
  aliases.Seen(10, 1, "old");
  aliases.Seen(10, 2, "new");
  aliases.Start(kernel.Invalidator());
  EXPECT_EQ(kernel.WaitFor(1).size(), 1u);
}

}  // namespace
}  // namespace dfuse
