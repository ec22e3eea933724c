// A tiny descriptor cache and many concurrent clients: files evicted from
// the cache are reopened by handle, and parallel calls do not interfere.
#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "tests/unit/storage/storage_test_env.h"

namespace dfuse::storage::testing {
namespace {

class StorageConcurrencyTest : public StorageTest {
 protected:
  StorageConcurrencyTest() {
    max_cached_files_ = 4;
    threads_ = 4;
  }
};

TEST_F(StorageConcurrencyTest, EvictedFilesAreReopenedByHandle) {
  std::vector<uint64_t> gfids;
  for (int i = 0; i < 50; i++) {
    const auto f = Create(root_, "f" + std::to_string(i));
    ASSERT_EQ(f.err(), 0);
    ASSERT_EQ(Write(f.attr().gfid(), 0, "content " + std::to_string(i)).err(), 0);
    gfids.push_back(f.attr().gfid());
  }
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 50; i++) {
      EXPECT_EQ(ReadString(gfids[i], 0, 100), "content " + std::to_string(i));
    }
  }
}

TEST_F(StorageConcurrencyTest, ParallelClients) {
  constexpr int kThreads = 8;
  constexpr int kFilesPerThread = 25;
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  const uint64_t dir = d.attr().gfid();
  // Tokens grow across all files, as a lease manager's do per GFID: inode
  // numbers (hence GFIDs) of removed files are reused.
  std::atomic<uint64_t> next_token{1};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([this, t, dir, &next_token] {
      for (int i = 0; i < kFilesPerThread; i++) {
        const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        const auto f = Create(dir, name);
        ASSERT_EQ(f.err(), 0);
        const std::string data(1000 + i, static_cast<char>('a' + t));
        ASSERT_EQ(Write(f.attr().gfid(), 0, data, next_token++).err(), 0);
        ASSERT_EQ(ReadString(f.attr().gfid(), 0, 4096), data);
        if (i % 2) {
          ASSERT_EQ(Unlink(dir, name), 0);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ListDir(dir, 10).size(), 2u + kThreads * (kFilesPerThread / 2 + 1));
}

// One client creates a name exclusively while another unlinks it in a loop
// (the fileserver personality at full sharing): a create either fails with
// EEXIST or returns the file it made, never ENOENT from losing the race
// between creating the file and finding it again.
TEST_F(StorageConcurrencyTest, ExclusiveCreateRacingUnlinkNeverSeesENOENT) {
  constexpr int kRounds = 3000;
  std::atomic<bool> done{false};
  std::thread unlinker([this, &done] {
    while (!done.load()) Unlink(root_, "contended");
  });
  int created = 0;
  for (int i = 0; i < kRounds; i++) {
    const auto f = Create(root_, "contended", 0640, /*exclusive=*/true);
    if (f.err() == EEXIST) continue;
    EXPECT_EQ(f.err(), 0) << "round " << i;
    if (f.err() != 0) break;
    EXPECT_EQ(f.attr().mode() & 07777, 0640u);
    created++;
  }
  done = true;
  unlinker.join();
  EXPECT_GT(created, 0);
}

// Renames replacing one name race unlinks of it: every file that loses the
// name is reported exactly once, by the call that took the name away. (A
// second link of each file keeps its inode number from being reused, so
// GFIDs are unique.)
TEST_F(StorageConcurrencyTest, EachFileThatLosesANameIsReportedOnce) {
  constexpr int kFiles = 400;
  const auto keep = Mkdir(root_, "keep");
  ASSERT_EQ(keep.err(), 0);
  std::set<uint64_t> created;
  std::mutex mu;
  std::multiset<uint64_t> reported;
  auto report = [&](const proto::UnlinkReply& r) {
    if (r.err() != 0 || !r.has_unlinked()) return;
    std::lock_guard<std::mutex> l(mu);
    reported.insert(r.unlinked().gfid());
  };
  std::atomic<bool> done{false};
  std::thread unlinker([&] {
    proto::NameRequest req;
    req.set_parent(root_);
    req.set_name("x");
    while (!done.load()) report(Call(&proto::Storage::Stub::Unlink, req));
  });
  for (int i = 0; i < kFiles; i++) {
    const std::string tmp = "tmp" + std::to_string(i);
    const auto f = Create(root_, tmp);
    ASSERT_EQ(f.err(), 0);
    created.insert(f.attr().gfid());
    proto::LinkRequest link;
    link.set_gfid(f.attr().gfid());
    link.set_new_parent(keep.attr().gfid());
    link.set_new_name(tmp);
    ASSERT_EQ(Call(&proto::Storage::Stub::Link, link).err(), 0);
    proto::RenameRequest rename;
    rename.set_parent(root_);
    rename.set_name(tmp);
    rename.set_new_parent(root_);
    rename.set_new_name("x");
    const auto r = Call(&proto::Storage::Stub::Rename, rename);
    ASSERT_EQ(r.err(), 0);
    report(r);
  }
  done = true;
  unlinker.join();
  const auto left = Lookup(root_, "x");
  if (left.err() == 0) created.erase(left.attr().gfid());
  EXPECT_EQ(reported, std::multiset<uint64_t>(created.begin(), created.end()));
}

}  // namespace
}  // namespace dfuse::storage::testing
