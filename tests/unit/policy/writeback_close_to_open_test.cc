// weakwriteback's close-to-open policy: an open of a file another node
// changed makes the kernel evict its inode (its name invalidated, ESTALE
// once), or, while the file is open on this node, drops its pages;
// unchanged files and this node's own changes keep the kernel's cache.
#include "impl/weakwriteback/writeback_close_to_open.h"

#include <fcntl.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/policy/policy_test_env.h"

namespace dfuse {
namespace {

class WriteBackCloseToOpenTest : public storage::testing::StorageTest {
 protected:
  static constexpr pid_t kThread = 100;
  static constexpr pid_t kOtherThread = 200;

  void SetUp() override {
    StorageTest::SetUp();
    node_ = std::make_unique<testing::TestNode>(server_->port());
    policy_ = std::make_unique<WriteBackCloseToOpen>(node_->Context(root_));
    policy_->Attach([this](fuse_ino_t parent, const std::string& name) {
      std::lock_guard<std::mutex> l(mu_);
      invalidated_.emplace_back(parent, name);
      return 0;
    });
    const proto::EntryReply f = Create(root_, "f");
    ASSERT_EQ(f.err(), 0);
    attr_ = f.attr();
    policy_->EntryGiven(attr_, FUSE_ROOT_ID, "f");  // the kernel looked it up
    ASSERT_EQ(Write(gfid(), 0, "version one").err(), 0);
  }
  std::vector<std::pair<fuse_ino_t, std::string>> Invalidated() {
    std::lock_guard<std::mutex> l(mu_);
    return invalidated_;
  }
  void TearDown() override {
    policy_.reset();
    node_.reset();
    StorageTest::TearDown();
  }

  uint64_t gfid() const { return attr_.gfid(); }
  // An OPEN as the core makes it: keep_cache preset from the cache policy.
  // Opens by thread `caller` (the VFS retries from the thread it refused).
  int Open(bool* keep_cache, pid_t caller = kThread) { return OpenFile(gfid(), keep_cache, caller); }
  int OpenFile(uint64_t file, bool* keep_cache, pid_t caller = kThread) {
    fuse_file_info fi{};
    fi.flags = O_RDONLY;
    fi.keep_cache = 1;
    const int err = policy_->Open(file, caller, &fi);
    *keep_cache = fi.keep_cache;
    return err;
  }
  // Another node writes the file (a different size, so its version moves).
  void ChangeElsewhere(const std::string& data) { ASSERT_EQ(Write(gfid(), 0, data).err(), 0); }

  std::unique_ptr<testing::TestNode> node_;
  std::unique_ptr<WriteBackCloseToOpen> policy_;
  proto::Attr attr_;
  std::mutex mu_;
  std::vector<std::pair<fuse_ino_t, std::string>> invalidated_;
};

TEST_F(WriteBackCloseToOpenTest, UnchangedFileKeepsTheKernelCache) {
  bool keep = false;
  EXPECT_EQ(Open(&keep), 0);
  EXPECT_TRUE(keep);
  EXPECT_EQ(Open(&keep), 0);
  EXPECT_TRUE(keep);
  EXPECT_TRUE(Invalidated().empty());
}

TEST_F(WriteBackCloseToOpenTest, FileChangedElsewhereIsEvictedAtTheNextOpen) {
  bool keep = false;
  ASSERT_EQ(Open(&keep), 0);
  ChangeElsewhere("version two, longer");
  EXPECT_EQ(Open(&keep), ESTALE);  // the VFS drops the inode and looks the name up again
  ASSERT_EQ(Invalidated().size(), 1u);
  EXPECT_EQ(Invalidated()[0], std::make_pair(fuse_ino_t{FUSE_ROOT_ID}, std::string("f")));
  // Another thread's open racing the retry, on the old inode: refreshed in
  // place, and the retry still comes.
  EXPECT_EQ(Open(&keep, kOtherThread), 0);
  EXPECT_FALSE(keep);
  // The retry: the eviction made the kernel forget the old inode, the
  // retry's lookup made a new one. The VFS retries once: even if the file
  // changed again in between, this open must not fail.
  policy_->Forgotten(gfid());
  policy_->EntryGiven(attr_, FUSE_ROOT_ID, "f");
  ChangeElsewhere("version three, longer still");
  EXPECT_EQ(Open(&keep), 0);
  EXPECT_FALSE(keep);
  EXPECT_EQ(Invalidated().size(), 1u);
  // A later open of the file changed again is a first try: evicted again.
  ChangeElsewhere("version four, the longest of them all");
  EXPECT_EQ(Open(&keep), ESTALE);
  EXPECT_EQ(Invalidated().size(), 2u);
  EXPECT_EQ(node_->Counter("close_to_open.replaced_inodes"), 2u);
  policy_->Forgotten(gfid());
  EXPECT_EQ(policy_->tracked_files(), 0u);
}

TEST_F(WriteBackCloseToOpenTest, RetryThatFindsAnotherFileUnderTheNameIsNotRefused) {
  // g is cached here and changed elsewhere, as f is.
  const proto::EntryReply g = Create(root_, "g");
  ASSERT_EQ(g.err(), 0);
  policy_->EntryGiven(g.attr(), FUSE_ROOT_ID, "g");
  bool keep = false;
  ASSERT_EQ(Open(&keep), 0);
  ASSERT_EQ(OpenFile(g.attr().gfid(), &keep), 0);
  ChangeElsewhere("version two, longer");
  ASSERT_EQ(Write(g.attr().gfid(), 0, "g, changed elsewhere").err(), 0);
  EXPECT_EQ(Open(&keep), ESTALE);
  // Meanwhile another node renamed g over f: the retry's lookup of "f"
  // finds g, whose open must not be refused again.
  policy_->EntryGiven(g.attr(), FUSE_ROOT_ID, "f");
  EXPECT_EQ(OpenFile(g.attr().gfid(), &keep), 0);
  EXPECT_FALSE(keep);
}

TEST_F(WriteBackCloseToOpenTest, FileOpenHereIsRefreshedNotReplaced) {
  bool keep = false;
  ASSERT_EQ(Open(&keep), 0);
  policy_->Opened(gfid(), O_RDONLY);
  ChangeElsewhere("version two, longer");
  EXPECT_EQ(Open(&keep), 0);  // a descriptor is open on the inode: keep it
  EXPECT_FALSE(keep);
  EXPECT_TRUE(Invalidated().empty());
  EXPECT_EQ(node_->Counter("close_to_open.refreshed_inodes"), 1u);
  policy_->Closed(gfid(), O_RDONLY);
  EXPECT_EQ(Open(&keep), 0);
  EXPECT_TRUE(keep);
}

TEST_F(WriteBackCloseToOpenTest, ChangeSeenBeforeTheOpenStillReplaces) {
  bool keep = false;
  ASSERT_EQ(Open(&keep), 0);
  ChangeElsewhere("version two, longer");
  // A LOOKUP saw the new version first (and the buffer cache recorded it).
  proto::Attr now = GetAttr(gfid()).attr();
  const bool changed =
      node_->cache->ObserveVersion(gfid(), now.size(), now.mtime_ns(), /*own=*/false);
  ASSERT_TRUE(changed);
  policy_->Observed(now, /*own=*/false, changed);
  EXPECT_EQ(Open(&keep), ESTALE);
}

TEST_F(WriteBackCloseToOpenTest, OwnChangesKeepTheKernelCache) {
  bool keep = false;
  ASSERT_EQ(Open(&keep), 0);
  // This node writes through its buffer cache; storage's version moves, but
  // the write-back's reply records it as this node's own.
  ASSERT_EQ(node_->cache->Write(gfid(), 0, "mine, and longer than before", 28), 0);
  ASSERT_EQ(node_->cache->Flush(gfid()), 0);
  EXPECT_EQ(Open(&keep), 0);
  EXPECT_TRUE(keep);
  EXPECT_EQ(node_->Counter("close_to_open.replaced_inodes"), 0u);
}

}  // namespace
}  // namespace dfuse
