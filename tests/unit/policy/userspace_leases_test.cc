// writethrough's userspace leases, two nodes against one lease manager and
// one storage server: I/O runs under a lease, a held lease blocks the other
// node until its request is done, the fencing token is the WRITE lease's,
// GETATTRs under a held lease are answered without storage, a READ that
// races a local write(2) gets the kernel's pages dropped after the write, a
// forgotten file gives its lease back, Stop gives every lease back, and a
// node that lingers gives a lease up once used, not after the whole hold.
#include "impl/writethrough/userspace_leases.h"

#include <fcntl.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "lease/manager_service.h"
#include "tests/unit/policy/policy_test_env.h"

namespace dfuse {
namespace {

using std::chrono::milliseconds;
using Access = ConsistencyPolicy::Access;
using Hold = std::unique_ptr<ConsistencyPolicy::Hold>;

class UserspaceLeasesTest : public storage::testing::StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    lease::ManagerOptions o;
    o.epoch = 1;
    o.term_ms = 10000;  // long: a test that waits out a term fails on time
    std::string error;
    manager_ = lease::ManagerServer::Start(o, &error);
    ASSERT_NE(manager_, nullptr) << error;
    const std::string address = "127.0.0.1:" + std::to_string(manager_->port());
    for (int i = 0; i < 2; i++) {
      nodes_[i] = std::make_unique<testing::TestNode>(server_->port());
      policies_[i] = std::make_unique<UserspaceLeases>(nodes_[i]->Context(root_, address));
      CachePolicy cache;
      ASSERT_EQ(policies_[i]->Start(&cache, &error), 0) << error;
      EXPECT_TRUE(cache.keep_cache);  // leases keep the kernel's pages valid
    }
    const proto::EntryReply f = Create(root_, "f");
    ASSERT_EQ(f.err(), 0);
    gfid_ = f.attr().gfid();
  }
  void TearDown() override {
    for (auto& p : policies_) p.reset();
    for (auto& n : nodes_) n.reset();
    manager_.reset();
    StorageTest::TearDown();
  }

  UserspaceLeases& a() { return *policies_[0]; }
  UserspaceLeases& b() { return *policies_[1]; }

  std::unique_ptr<lease::ManagerServer> manager_;
  std::unique_ptr<testing::TestNode> nodes_[2];
  std::unique_ptr<UserspaceLeases> policies_[2];
  uint64_t gfid_ = 0;
};

TEST_F(UserspaceLeasesTest, HeldLeaseBlocksTheOtherNodeUntilTheRequestIsDone) {
  Hold held;
  ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &held), 0);
  const uint64_t token = a().WriteToken(gfid_);
  EXPECT_GT(token, 0u);
  EXPECT_EQ(b().WriteToken(gfid_), 0u);

  auto reader = std::async(std::launch::async, [&] {
    Hold h;
    return b().Enter(gfid_, Access::kRead, &h);
  });
  EXPECT_EQ(reader.wait_for(milliseconds(300)), std::future_status::timeout)
      << "node b read while node a's write was in flight";
  held.reset();  // a's request is done: the revoke may proceed
  ASSERT_EQ(reader.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(reader.get(), 0);
  EXPECT_EQ(a().WriteToken(gfid_), 0u);  // downgraded: no more writes under the old token

  Hold again;
  ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &again), 0);
  EXPECT_GT(a().WriteToken(gfid_), token);  // every WRITE grant has a newer token
}

TEST_F(UserspaceLeasesTest, GetAttrUnderAHeldLeaseAsksStorageOncePerEpoch) {
  int fetches = 0;
  auto fetch = [&](proto::Attr* attr) {
    fetches++;
    return nodes_[0]->storage->GetAttr(gfid_, attr);
  };
  proto::Attr attr;
  for (int i = 0; i < 3; i++) {
    Hold h;
    double timeout = -1;
    ASSERT_EQ(a().GetAttr(gfid_, fetch, &attr, &timeout, &h), 0);
    EXPECT_EQ(attr.gfid(), gfid_);
    // The kernel may keep them while the lease is trusted, never longer.
    EXPECT_GT(timeout, 5.0);
    EXPECT_LE(timeout, 10.0);
  }
  EXPECT_EQ(fetches, 1);
  EXPECT_EQ(nodes_[0]->Counter("lease.cached_getattrs"), 2u);
  {
    Hold h;  // node b writes: a's lease is revoked, a new epoch begins
    ASSERT_EQ(b().Enter(gfid_, Access::kWrite, &h), 0);
  }
  Hold h;
  double timeout = -1;
  ASSERT_EQ(a().GetAttr(gfid_, fetch, &attr, &timeout, &h), 0);
  EXPECT_EQ(fetches, 2);
}

// An entry (LOOKUP, READDIRPLUS) handed out while the lease is held carries
// the attributes GETATTRs answer, not storage's newer mtime: the kernel
// drops a file's pages on every mtime change it is told about.
TEST_F(UserspaceLeasesTest, EntriesUnderAHeldLeaseCarryTheLeasedAttributes) {
  auto fetch = [&](proto::Attr* attr) { return nodes_[0]->storage->GetAttr(gfid_, attr); };
  proto::Attr leased;
  {
    Hold h;
    double timeout = -1;
    ASSERT_EQ(a().GetAttr(gfid_, fetch, &leased, &timeout, &h), 0);
  }
  // Storage's mtime moves (as when this node's written bytes reach it).
  proto::SetAttrRequest set;
  set.set_gfid(gfid_);
  set.set_valid(proto::SETATTR_MTIME);
  set.set_mtime_ns(leased.mtime_ns() + 5'000'000'000);
  proto::Attr stored;
  ASSERT_EQ(nodes_[0]->storage->SetAttr(set, &stored), 0);
  ASSERT_NE(stored.mtime_ns(), leased.mtime_ns());

  proto::Attr entry = stored;
  a().BeforeEntryReply(&entry);
  EXPECT_EQ(entry.mtime_ns(), leased.mtime_ns()) << "the kernel would drop the file's pages";
  {
    Hold h;  // node b writes: a's lease is revoked
    ASSERT_EQ(b().Enter(gfid_, Access::kWrite, &h), 0);
  }
  entry = stored;
  a().BeforeEntryReply(&entry);
  EXPECT_EQ(entry.mtime_ns(), stored.mtime_ns()) << "no lease, no cached attributes";
}

// A link count is not in the lease's write path, yet a GETATTR under the
// lease answers it from the cache: a node that changes it must end the
// other nodes' epochs.
TEST_F(UserspaceLeasesTest, LinkCountChangedElsewhereEndsTheCachedAttributes) {
  auto fetch_on = [&](int node) {
    return [this, node](proto::Attr* attr) { return nodes_[node]->storage->GetAttr(gfid_, attr); };
  };
  proto::Attr attr;
  for (int i = 0; i < 2; i++) {
    Hold h;
    double timeout = -1;
    ASSERT_EQ(a().GetAttr(gfid_, fetch_on(0), &attr, &timeout, &h), 0);
  }
  EXPECT_EQ(attr.nlink(), 1u);
  EXPECT_EQ(nodes_[0]->Counter("lease.cached_getattrs"), 1u);

  proto::Attr linked;
  ASSERT_EQ(nodes_[1]->storage->Link(gfid_, root_, "g", &linked), 0);
  ASSERT_EQ(b().LinkCountChanged(gfid_), 0);
  EXPECT_GT(b().WriteToken(gfid_), 0u);  // b holds the WRITE lease now
  Hold h;
  double timeout = -1;
  ASSERT_EQ(a().GetAttr(gfid_, fetch_on(0), &attr, &timeout, &h), 0);
  EXPECT_EQ(attr.nlink(), 2u);
  EXPECT_EQ(nodes_[0]->Counter("lease.cached_getattrs"), 1u);  // fetched anew
}

TEST_F(UserspaceLeasesTest, ReadDuringALocalWriteDropsTheKernelsPagesAfterIt) {
  a().Opened(gfid_, O_RDWR);
  auto read = [&](uint64_t offset, uint64_t length) {
    Hold h;
    ASSERT_EQ(a().EnterRead(gfid_, {/*task=*/0, offset, length}, &h), 0);
  };
  // write(2) of [offset, offset + length) by thread `task`: its intent (the
  // kernel's security.capability lookup), the page copy, then the WRITE.
  auto start = [&](pid_t task) { ASSERT_EQ(a().WriteStarting(gfid_, task), 0); };
  auto finish = [&](pid_t task, uint64_t offset, uint64_t length) {
    Hold h;
    ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &h), 0);
    a().WriteDone(gfid_, {task, offset, length});
  };
  auto invalidations = [&] { return nodes_[0]->Counter("lease.stale_fill_invalidations"); };
  auto pages = [&] { return nodes_[0]->Counter("lease.stale_fill_pages"); };

  read(0, 65536);
  start(1);
  finish(1, 4096, 4096);
  read(0, 65536);
  EXPECT_EQ(invalidations(), 0u);
  // A READ of the written page while the write is in flight may refill it
  // with the older data: that page goes, and only that one.
  start(1);
  read(0, 65536);
  finish(1, 4096, 100);
  EXPECT_EQ(invalidations(), 1u);
  EXPECT_EQ(pages(), 1u);
  start(1);
  finish(1, 4096, 100);  // the READ went with the intent
  EXPECT_EQ(invalidations(), 1u);
  // A READ of other pages leaves the kernel's cache as it is.
  start(1);
  read(65536, 4096);
  finish(1, 0, 8192);
  EXPECT_EQ(invalidations(), 1u);
  // Two threads writing: each WRITE ends its own intent and drops only what
  // its intent's READs covered of what it wrote.
  start(1);
  start(2);
  read(8192, 8192);    // seen by both intents
  finish(2, 0, 4096);  // no overlap
  EXPECT_EQ(invalidations(), 1u);
  start(2);
  read(20480, 4096);        // seen by thread 1's intent and thread 2's new one
  finish(1, 12288, 12288);  // overlaps both READs: pages 3 and 5
  EXPECT_EQ(invalidations(), 2u);
  EXPECT_EQ(pages(), 3u);
  finish(2, 20480, 10);  // its own intent saw page 5
  EXPECT_EQ(invalidations(), 3u);
  EXPECT_EQ(pages(), 4u);
  // A truncate whose intent saw a READ may have changed any page.
  start(3);
  read(0, 4096);
  {
    Hold h;
    ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &h), 0);
    a().WriteDone(gfid_, {3});
  }
  EXPECT_EQ(invalidations(), 4u);
  EXPECT_EQ(nodes_[0]->Counter("lease.stale_fill_whole_files"), 1u);
  // A WRITE with no intent of its thread ends no other thread's.
  start(4);
  finish(5, 0, 4096);
  read(0, 4096);
  finish(4, 0, 4096);
  EXPECT_EQ(invalidations(), 5u);
  a().Closed(gfid_, O_RDWR);
}

TEST_F(UserspaceLeasesTest, FirstWriteAfterReadsKeepsTheCacheUnlessAnotherNodeWroteBetween) {
  auto enter = [&](UserspaceLeases& node, Access access) {
    Hold h;
    ASSERT_EQ(node.Enter(gfid_, access, &h), 0);
  };
  enter(a(), Access::kRead);
  enter(a(), Access::kWrite);  // an upgrade nobody came between
  EXPECT_EQ(nodes_[0]->Counter("lease.upgrades"), 1u);
  EXPECT_EQ(nodes_[0]->Counter("lease.upgrades_kept"), 1u);
  EXPECT_EQ(nodes_[0]->Counter("lease.revokes_handled"), 0u);
  enter(b(), Access::kRead);  // a is downgraded to READ
  EXPECT_EQ(nodes_[0]->Counter("lease.revokes_handled"), 1u);
  enter(a(), Access::kWrite);  // upgrades again; b's READ lease is revoked first
  EXPECT_EQ(nodes_[0]->Counter("lease.upgrades_kept"), 2u);
  EXPECT_EQ(nodes_[0]->Counter("lease.revokes_handled"), 1u);
}

TEST_F(UserspaceLeasesTest, ForgottenFileGivesItsLeaseBack) {
  {
    Hold h;
    ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &h), 0);
  }
  a().Forgotten(gfid_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (nodes_[0]->Counter("lease.gate_files_reaped") == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(nodes_[0]->Counter("lease.gate_files_reaped"), 1u);
  // Node b gets the lease at once: nothing to revoke, no term to wait out.
  const auto start = std::chrono::steady_clock::now();
  Hold h;
  ASSERT_EQ(b().Enter(gfid_, Access::kWrite, &h), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(nodes_[0]->Counter("lease.revokes_handled"), 0u);
}

TEST_F(UserspaceLeasesTest, StopGivesEveryLeaseBack) {
  {
    Hold h;
    ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &h), 0);
  }
  a().Stop();
  a().Stop();  // idempotent
  const auto start = std::chrono::steady_clock::now();
  Hold h;
  ASSERT_EQ(b().Enter(gfid_, Access::kWrite, &h), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

// A node that lingers is revoked as soon as the other node asks, with the
// rest of a long minimum hold, and gives the lease up once its request is
// done instead of keeping it for the whole hold.
TEST_F(UserspaceLeasesTest, ALingeringNodeGivesTheLeaseUpOnceUsed) {
  for (auto& p : policies_) p.reset();
  lease::ManagerOptions o;
  o.epoch = 2;
  o.term_ms = 60000;
  o.min_hold_ms = o.max_hold_ms = 30000;
  std::string error;
  manager_ = lease::ManagerServer::Start(o, &error);
  ASSERT_NE(manager_, nullptr) << error;
  const std::string address = "127.0.0.1:" + std::to_string(manager_->port());
  for (int i = 0; i < 2; i++) {
    policies_[i] = std::make_unique<UserspaceLeases>(nodes_[i]->Context(root_, address));
    CachePolicy cache;
    cache.linger = i == 0;
    ASSERT_EQ(policies_[i]->Start(&cache, &error), 0) << error;
  }
  {
    Hold h;
    ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &h), 0);
  }
  const auto start = std::chrono::steady_clock::now();
  Hold h;
  ASSERT_EQ(b().Enter(gfid_, Access::kWrite, &h), 0);  // 30 s if a waited the hold out
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(a().WriteToken(gfid_), 0u);
}

// A manager that restarts without a reclaim window gives the node a new
// session without its lease, and the session is trusted again at once. The
// gate drops the lost lease only once the request still in flight under it
// is done; until then no further request is served from it: the next one
// asks the new manager, after the drop.
TEST_F(UserspaceLeasesTest, ALeaseTheSessionLostIsNotServedFromBeforeItIsDropped) {
  Hold in_flight;
  ASSERT_EQ(a().Enter(gfid_, Access::kWrite, &in_flight), 0);
  const int port = manager_->port();
  manager_->Shutdown();
  manager_.reset();
  lease::ManagerOptions o;
  o.listen = "127.0.0.1:" + std::to_string(port);
  o.epoch = 2;
  o.term_ms = 10000;
  std::string error;
  manager_ = lease::ManagerServer::Start(o, &error);
  ASSERT_NE(manager_, nullptr) << error;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (nodes_[0]->Counter("lease.losses") == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(nodes_[0]->Counter("lease.losses"), 1u) << "the new session did not drop the lease";

  auto next = std::async(std::launch::async, [&] {
    Hold h;
    return a().Enter(gfid_, Access::kRead, &h);
  });
  EXPECT_EQ(next.wait_for(milliseconds(300)), std::future_status::timeout)
      << "served from the lease the session lost";
  in_flight.reset();  // the drop can run now, then the request asks again
  ASSERT_EQ(next.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(next.get(), 0);
  EXPECT_EQ(a().WriteToken(gfid_), 0u);
}

}  // namespace
}  // namespace dfuse
