// The daemon's side of dfuse.ko's lease protocol, with a socket standing in
// for /dev/dfuse and a real lease manager on loopback: upcalls are taken
// out of the request stream and answered with the granted mode, revokes
// become release notifies, interrupts end interruptible upcalls only, a
// forgotten file's lease is given back.
#include "impl/dfuse/kernel_leases.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernel/dfuse/dfuse_proto.h"
#include "lease/manager_service.h"
#include "proto/storage.pb.h"
#include "tests/support/no_backend.h"

namespace dfuse {
namespace {

using lease::LeaseMode;
using std::chrono::milliseconds;

constexpr uint64_t kFile = (uint64_t{1} << 48) | 42;
constexpr uint64_t kRoot = (uint64_t{1} << 48) | 1;  // the root directory's GFID

using test::NoBackend;  // revokes have nothing to flush

struct Message {
  fuse_out_header header{};
  std::string body;
};

class KernelLeasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lease::ManagerOptions o;
    o.epoch = 1;
    o.term_ms = 2000;
    std::string error;
    manager_ = lease::ManagerServer::Start(o, &error);
    ASSERT_NE(manager_, nullptr) << error;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds_), 0);
    cache_ = std::make_unique<BufferCache>(BufferCacheOptions{}, &backend_, &stats_);
    storage_ = std::make_unique<StorageClient>(StorageClientOptions{"127.0.0.1:1"}, &stats_);
    PolicyContext ctx;
    ctx.cache = cache_.get();
    ctx.storage = storage_.get();
    ctx.stats = &stats_;
    ctx.lease_manager = Address();
    ctx.node_name = "kernel-node";
    ctx.root_gfid = kRoot;
    leases_ = std::make_unique<KernelLeases>(ctx);
    CachePolicy cache_policy;
    cache_policy.dir_leases = true;
    ASSERT_EQ(leases_->Start(&cache_policy, &error), 0) << error;
    leases_->AttachFd(fds_[0]);
  }

  void TearDown() override {
    leases_.reset();
    if (other_) other_->Shutdown();
    close(fds_[0]);
    close(fds_[1]);
  }

  std::string Address() const { return "127.0.0.1:" + std::to_string(manager_->port()); }

  // What the kernel would send: a DFUSE_LEASE request.
  bool Upcall(uint64_t unique, uint32_t mode, uint32_t flags = 0, uint64_t nodeid = kFile) {
    fuse_in_header h{};
    h.opcode = DFUSE_LEASE;
    h.unique = unique;
    h.nodeid = nodeid;
    dfuse_lease_in in{};
    in.mode = mode;
    in.flags = flags;
    in.end = UINT64_MAX;
    return leases_->Intercept(h, reinterpret_cast<const char*>(&in), sizeof(in));
  }

  bool Interrupt(uint64_t unique) {
    fuse_in_header h{};
    h.opcode = FUSE_INTERRUPT;
    h.unique = 1000 + unique;
    fuse_interrupt_in in{};
    in.unique = unique;
    return leases_->Intercept(h, reinterpret_cast<const char*>(&in), sizeof(in));
  }

  // The next message the daemon wrote to the "device", if one comes in time.
  bool Next(Message* m, milliseconds timeout = milliseconds(5000)) {
    pollfd p{fds_[1], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char buf[256];
    const ssize_t n = read(fds_[1], buf, sizeof(buf));
    if (n < static_cast<ssize_t>(sizeof(fuse_out_header))) return false;
    std::memcpy(&m->header, buf, sizeof(m->header));
    m->body.assign(buf + sizeof(m->header), n - sizeof(m->header));
    EXPECT_EQ(m->header.len, static_cast<uint32_t>(n));
    return true;
  }

  static dfuse_notify_release_out ReleaseNotify(const Message& m) {
    dfuse_notify_release_out n{};
    EXPECT_EQ(m.header.unique, 0u);
    EXPECT_EQ(m.header.error, DFUSE_NOTIFY_RELEASE);
    EXPECT_EQ(m.body.size(), sizeof(n));
    std::memcpy(&n, m.body.data(), std::min(m.body.size(), sizeof(n)));
    return n;
  }

  static dfuse_lease_out Granted(const Message& m) {
    dfuse_lease_out out{};
    EXPECT_EQ(m.body.size(), sizeof(out));
    std::memcpy(&out, m.body.data(), std::min(m.body.size(), sizeof(out)));
    return out;
  }

  static uint32_t GrantedMode(const Message& m) { return Granted(m).mode; }

  static uint32_t GrantNumber(const Message& m) { return Granted(m).grant; }

  // The other node asks for WRITE on gfid (started first), in the background.
  std::future<int> OtherTakesWrite(uint64_t gfid) {
    return std::async(std::launch::async, [this, gfid] {
      uint64_t token = 0;
      return other_->Acquire(gfid, LeaseMode::kWrite, &token);
    });
  }

  // This node holds WRITE, and the other node takes it: the kernel keeps
  // its pages.
  void KeepPagesForTheOtherNode() {
    ASSERT_TRUE(Upcall(1, DFUSE_LEASE_WRITE));
    Message m;
    ASSERT_TRUE(Next(&m));
    StartOtherNode();
    auto other = OtherTakesWrite(kFile);
    ASSERT_TRUE(Next(&m));
    EXPECT_EQ(ReleaseNotify(m).flags, static_cast<uint32_t>(DFUSE_RELEASE_KEEP_PAGES));
    ASSERT_EQ(other.get(), 0);
  }

  // Another node's agent, whose revoke handler can be held up.
  void StartOtherNode() {
    lease::LeaseAgentOptions o;
    o.manager = Address();
    o.name = "other-node";
    other_ = std::make_unique<lease::LeaseAgent>(
        o,
        [this](uint64_t gfid, LeaseMode, std::chrono::milliseconds) {
          while (hold_other_.load()) std::this_thread::sleep_for(milliseconds(5));
          // What storage would have said of its write-back (no fencing key
          // here, so the manager takes it unproved).
          if (!other_handoff_.empty()) other_->HandOff(gfid, other_handoff_, "");
        },
        &stats_);
    std::string error;
    ASSERT_EQ(other_->Start(milliseconds(5000), &error), 0) << error;
  }

  StatsRegistry stats_;
  NoBackend backend_;
  std::unique_ptr<lease::ManagerServer> manager_;
  std::unique_ptr<BufferCache> cache_;
  std::unique_ptr<StorageClient> storage_;
  std::unique_ptr<KernelLeases> leases_;
  std::unique_ptr<lease::LeaseAgent> other_;
  std::atomic<bool> hold_other_{false};
  std::string other_handoff_;  // set before the other node starts
  int fds_[2] = {-1, -1};
};

TEST_F(KernelLeasesTest, UpcallIsAnsweredWithTheGrantedMode) {
  ASSERT_TRUE(Upcall(7, DFUSE_LEASE_WRITE));
  Message m;
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 7u);
  EXPECT_EQ(m.header.error, 0);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_WRITE));
  EXPECT_NE(leases_->WriteToken(kFile), 0u) << "writes under a WRITE lease carry its token";

  ASSERT_TRUE(Upcall(8, DFUSE_LEASE_READ));
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 8u);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_READ));
  EXPECT_EQ(stats_.GetCounter("kernel_leases.upcalls")->Get(), 2u);
  EXPECT_EQ(stats_.GetCounter("kernel_leases.dir_upcalls")->Get(), 0u);
}

TEST_F(KernelLeasesTest, AGrantCarriesTheAttributesTheKernelAskedFor) {
  int asked = 0;
  int fail = 0;  // the source's answer
  leases_->ServeAttrsFrom([&](uint64_t gfid, struct stat* st, double* timeout) {
    asked++;
    EXPECT_EQ(gfid, kFile);
    if (fail != 0) return fail;
    st->st_ino = gfid;
    st->st_mode = S_IFREG | 0640;
    st->st_size = 12345;
    st->st_mtim = {77, 500};
    *timeout = 2.5;
    return 0;
  });
  ASSERT_TRUE(Upcall(1, DFUSE_LEASE_READ, DFUSE_LEASE_ATTR));
  Message m;
  ASSERT_TRUE(Next(&m));
  dfuse_lease_out out = Granted(m);
  EXPECT_EQ(out.mode, static_cast<uint32_t>(DFUSE_LEASE_READ));
  EXPECT_EQ(out.flags, static_cast<uint32_t>(DFUSE_LEASE_ATTR));
  EXPECT_EQ(out.attr.ino, kFile);
  EXPECT_EQ(out.attr.mode, static_cast<uint32_t>(S_IFREG | 0640));
  EXPECT_EQ(out.attr.size, 12345u);
  EXPECT_EQ(out.attr.mtime, 77u);
  EXPECT_EQ(out.attr.mtimensec, 500u);
  EXPECT_EQ(out.attr_valid, 2u);
  EXPECT_EQ(out.attr_valid_nsec, 500000000u);
  EXPECT_EQ(asked, 1);

  // Not asked for (the kernel held a lease already): not fetched.
  ASSERT_TRUE(Upcall(2, DFUSE_LEASE_READ));
  ASSERT_TRUE(Next(&m));
  out = Granted(m);
  EXPECT_EQ(out.mode, static_cast<uint32_t>(DFUSE_LEASE_READ));
  EXPECT_EQ(out.flags, 0u);
  EXPECT_EQ(asked, 1);

  // The source failed: the grant still goes, and the kernel asks itself.
  // (The upgrade starts with a release of the READ lease.)
  fail = EIO;
  ASSERT_TRUE(Upcall(3, DFUSE_LEASE_WRITE, DFUSE_LEASE_ATTR));
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(ReleaseNotify(m).flags,
            static_cast<uint32_t>(DFUSE_RELEASE_KEEP_PAGES | DFUSE_RELEASE_UPGRADE));
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 3u);
  EXPECT_EQ(m.header.error, 0);
  EXPECT_EQ(Granted(m).flags, 0u);
  EXPECT_EQ(asked, 2);
}

TEST_F(KernelLeasesTest, OtherRequestsGoToLibfuse) {
  fuse_in_header h{};
  h.opcode = FUSE_READ;
  h.unique = 3;
  char arg[64] = {};
  EXPECT_FALSE(leases_->Intercept(h, arg, sizeof(arg)));
  EXPECT_FALSE(Interrupt(12345)) << "an interrupt of a request libfuse serves is libfuse's";
}

TEST_F(KernelLeasesTest, BadModeIsRefused) {
  ASSERT_TRUE(Upcall(9, 77));
  Message m;
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 9u);
  EXPECT_EQ(m.header.error, -EINVAL);
}

TEST_F(KernelLeasesTest, RevokeBecomesAReleaseNotifyBeforeTheOtherNodeIsGranted) {
  ASSERT_TRUE(Upcall(1, DFUSE_LEASE_WRITE));
  Message m;
  ASSERT_TRUE(Next(&m));
  ASSERT_EQ(m.header.error, 0);

  StartOtherNode();
  auto other = OtherTakesWrite(kFile);
  ASSERT_TRUE(Next(&m)) << "no release notify";
  const dfuse_notify_release_out n = ReleaseNotify(m);
  EXPECT_EQ(n.nodeid, kFile);
  EXPECT_EQ(n.mode, static_cast<uint32_t>(DFUSE_LEASE_NONE));
  EXPECT_EQ(n.end, UINT64_MAX);
  // Kept, out of use: the next grant says what to drop.
  EXPECT_EQ(n.flags, static_cast<uint32_t>(DFUSE_RELEASE_KEEP_PAGES));
  EXPECT_EQ(other.get(), 0);
}

// A revoke's release names the grant it takes back, as the upcall was
// answered with it, so that the kernel lets the task that asked for it use
// it once first. The release an upgrade starts with names the READ grant it
// gives up, flagged as an upgrade's (the kernel waits for no task then: the
// one that asked waits for a newer grant, which needs that release done),
// and the WRITE grant that answers the upgrade is numbered after it, so the
// kernel takes it in rather than drop it for racing the release.
TEST_F(KernelLeasesTest, AReleaseNamesTheGrantItTakesBack) {
  ASSERT_TRUE(Upcall(1, DFUSE_LEASE_READ));
  Message m;
  ASSERT_TRUE(Next(&m));
  const uint32_t read_grant = GrantNumber(m);
  EXPECT_NE(read_grant, 0u);

  ASSERT_TRUE(Upcall(2, DFUSE_LEASE_WRITE));
  ASSERT_TRUE(Next(&m)) << "no release notify before the upgrade";
  EXPECT_EQ(ReleaseNotify(m).grant, read_grant);
  EXPECT_TRUE(ReleaseNotify(m).flags & DFUSE_RELEASE_UPGRADE);
  ASSERT_TRUE(Next(&m));
  ASSERT_EQ(m.header.unique, 2u);
  const uint32_t write_grant = GrantNumber(m);
  EXPECT_GT(write_grant, read_grant);
  ASSERT_TRUE(Upcall(3, DFUSE_LEASE_WRITE));
  ASSERT_TRUE(Next(&m));
  ASSERT_EQ(m.header.unique, 3u);
  EXPECT_EQ(GrantNumber(m), write_grant) << "a lease held is answered with its grant";

  StartOtherNode();
  auto other = OtherTakesWrite(kFile);
  ASSERT_TRUE(Next(&m)) << "no release notify";
  EXPECT_EQ(ReleaseNotify(m).grant, write_grant);
  EXPECT_EQ(other.get(), 0);
}

// The pages a revoke kept lose, before the next grant is answered, the
// bytes the WRITE holders between say they wrote, and nothing else.
TEST_F(KernelLeasesTest, KeptPagesLoseWhatTheWritersBetweenWrote) {
  proto::Handoff handoff;
  handoff.mutable_attrs()->set_gfid(kFile);
  handoff.set_written_known(true);
  proto::Extent* e = handoff.add_written();
  e->set_offset(4096);
  e->set_length(4096);
  e = handoff.add_written();
  e->set_offset(1 << 20);
  e->set_length(0);  // to the end
  other_handoff_ = handoff.SerializeAsString();

  ASSERT_NO_FATAL_FAILURE(KeepPagesForTheOtherNode());
  Message m;

  ASSERT_TRUE(Upcall(2, DFUSE_LEASE_READ));
  std::vector<std::pair<int64_t, int64_t>> dropped;
  for (;;) {
    ASSERT_TRUE(Next(&m)) << "no answer";
    if (m.header.unique == 2) break;
    ASSERT_EQ(m.header.error, FUSE_NOTIFY_INVAL_INODE) << "only the written bytes go";
    fuse_notify_inval_inode_out inval{};
    ASSERT_EQ(m.body.size(), sizeof(inval));
    std::memcpy(&inval, m.body.data(), sizeof(inval));
    EXPECT_EQ(inval.ino, kFile);
    dropped.emplace_back(inval.off, inval.len);
  }
  EXPECT_EQ(m.header.error, 0);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_READ));
  EXPECT_EQ(dropped, (std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {1 << 20, 0}}));
  EXPECT_EQ(stats_.GetCounter("lease.kept_refreshed")->Get(), 1u);
}

// A writer between that handed nothing over may have written anything:
// the kept pages all go (a release without the flag) before the grant.
TEST_F(KernelLeasesTest, KeptPagesGoWhenTheWritersBetweenDoNotSay) {
  ASSERT_NO_FATAL_FAILURE(KeepPagesForTheOtherNode());
  Message m;

  ASSERT_TRUE(Upcall(2, DFUSE_LEASE_READ));
  ASSERT_TRUE(Next(&m));
  const dfuse_notify_release_out n = ReleaseNotify(m);
  EXPECT_EQ(n.mode, static_cast<uint32_t>(DFUSE_LEASE_NONE));
  EXPECT_EQ(n.flags, 0u) << "the kept pages must go";
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 2u);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_READ));
  EXPECT_EQ(stats_.GetCounter("lease.kept_dropped")->Get(), 1u);
}

// An upgrade from READ gives the READ lease up before it asks for WRITE,
// but tells the kernel to keep its pages: nobody wrote between, so the
// grant comes with no second release that would drop them.
TEST_F(KernelLeasesTest, AnUpgradeKeepsTheKernelsPages) {
  ASSERT_TRUE(Upcall(1, DFUSE_LEASE_READ));
  Message m;
  ASSERT_TRUE(Next(&m));
  ASSERT_EQ(m.header.error, 0);
  ASSERT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_READ));

  ASSERT_TRUE(Upcall(2, DFUSE_LEASE_WRITE));
  ASSERT_TRUE(Next(&m)) << "no release notify before the upgrade";
  const dfuse_notify_release_out n = ReleaseNotify(m);
  EXPECT_EQ(n.nodeid, kFile);
  EXPECT_EQ(n.mode, static_cast<uint32_t>(DFUSE_LEASE_NONE));
  EXPECT_EQ(n.flags, static_cast<uint32_t>(DFUSE_RELEASE_KEEP_PAGES | DFUSE_RELEASE_UPGRADE));
  ASSERT_TRUE(Next(&m)) << "no answer to the upgrade";
  EXPECT_EQ(m.header.unique, 2u);
  EXPECT_EQ(m.header.error, 0);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_WRITE));
  EXPECT_FALSE(Next(&m, milliseconds(200))) << "a second release dropped the kept pages";
}

// The kernel calls the root FUSE_ROOT_ID; the lease manager knows its GFID.
TEST_F(KernelLeasesTest, TheRootDirectorysLeaseIsKeptUnderItsGfid) {
  EXPECT_EQ(leases_->MountOptions(), (std::vector<std::string>{"leases", "dirleases"}));
  ASSERT_TRUE(Upcall(5, DFUSE_LEASE_READ, DFUSE_LEASE_DIR, FUSE_ROOT_ID));
  Message m;
  ASSERT_TRUE(Next(&m));
  ASSERT_EQ(m.header.error, 0);

  StartOtherNode();
  auto other = OtherTakesWrite(kRoot);
  ASSERT_TRUE(Next(&m)) << "no release notify: the upcall's lease was not the root's";
  const dfuse_notify_release_out n = ReleaseNotify(m);
  EXPECT_EQ(n.nodeid, uint64_t{FUSE_ROOT_ID});
  EXPECT_EQ(n.mode, static_cast<uint32_t>(DFUSE_LEASE_NONE));
  // A directory keeps no pages, so its next grant has none to drop.
  EXPECT_EQ(n.flags, 0u);
  EXPECT_EQ(other.get(), 0);
  ASSERT_TRUE(Upcall(6, DFUSE_LEASE_READ, DFUSE_LEASE_DIR, FUSE_ROOT_ID));
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 6u) << "a second release before the grant";
  // Counted apart from the files' (which of the two changes hands).
  EXPECT_EQ(stats_.GetCounter("kernel_leases.dir_upcalls")->Get(), 2u);
  EXPECT_EQ(stats_.GetCounter("kernel_leases.dir_releases")->Get(), 1u);
}

// A file's WRITE lease given up with nothing to write back still asks
// storage for the hand-off (one call without data); a directory's, whose
// changes went to storage as they were made, asks nothing.
TEST_F(KernelLeasesTest, AWriteRevokeAsksStorageForTheHandoffButADirectorysDoesNot) {
  ASSERT_NO_FATAL_FAILURE(KeepPagesForTheOtherNode());
  EXPECT_EQ(backend_.writes, 1) << "the hand-off was not asked for";

  Message m;
  ASSERT_TRUE(Upcall(2, DFUSE_LEASE_WRITE, DFUSE_LEASE_DIR, FUSE_ROOT_ID));
  ASSERT_TRUE(Next(&m));
  auto dir = OtherTakesWrite(kRoot);
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(ReleaseNotify(m).nodeid, uint64_t{FUSE_ROOT_ID});
  ASSERT_EQ(dir.get(), 0);
  EXPECT_EQ(backend_.writes, 1) << "a directory's revoke called storage";
}

TEST_F(KernelLeasesTest, ForgottenFileGivesItsLeaseBack) {
  ASSERT_TRUE(Upcall(31, DFUSE_LEASE_WRITE));
  Message m;
  ASSERT_TRUE(Next(&m));
  ASSERT_EQ(m.header.error, 0);
  leases_->Forgotten(kFile);  // the kernel evicted the inode
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (stats_.GetCounter("kernel_leases.files_reaped")->Get() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(stats_.GetCounter("kernel_leases.files_reaped")->Get(), 1u);
  EXPECT_EQ(leases_->WriteToken(kFile), 0u);

  // The other node gets the lease at once: nothing to revoke, no term to
  // wait out, no release notify to the kernel.
  StartOtherNode();
  const auto start = std::chrono::steady_clock::now();
  uint64_t token = 0;
  ASSERT_EQ(other_->Acquire(kFile, LeaseMode::kWrite, &token), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_FALSE(Next(&m, milliseconds(200))) << "a release notify for a forgotten inode";

  // A new inode for the file asks again and is served as before.
  ASSERT_TRUE(Upcall(32, DFUSE_LEASE_READ));
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 32u);
  EXPECT_EQ(m.header.error, 0);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_READ));
}

TEST_F(KernelLeasesTest, InterruptEndsAWaitingUpcallButNotAPageFaults) {
  StartOtherNode();
  uint64_t token = 0;
  ASSERT_EQ(other_->Acquire(kFile, LeaseMode::kWrite, &token), 0);
  hold_other_ = true;  // the other node's revoke stalls: our upcalls wait

  ASSERT_TRUE(Upcall(21, DFUSE_LEASE_READ));
  ASSERT_TRUE(Upcall(22, DFUSE_LEASE_READ, DFUSE_LEASE_NOINTR));
  Message m;
  EXPECT_FALSE(Next(&m, milliseconds(300))) << "answered while the other node holds WRITE";

  ASSERT_TRUE(Interrupt(21));
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 21u);
  EXPECT_EQ(m.header.error, -EINTR);

  ASSERT_TRUE(Interrupt(22)) << "the fault's interrupt is swallowed, not passed to libfuse";
  EXPECT_FALSE(Next(&m, milliseconds(300)));

  hold_other_ = false;
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 22u);
  EXPECT_EQ(m.header.error, 0);
  EXPECT_EQ(GrantedMode(m), static_cast<uint32_t>(DFUSE_LEASE_READ));
  EXPECT_FALSE(Next(&m, milliseconds(300))) << "the interrupted upcall was answered twice";
}

// The stats dump lists every upcall not answered yet (what a kernel task
// blocked in dfuse_lease_upcall waits for) until it is answered.
TEST_F(KernelLeasesTest, TheStateDumpListsTheUpcallsNotAnswered) {
  StartOtherNode();
  uint64_t token = 0;
  ASSERT_EQ(other_->Acquire(kFile, LeaseMode::kWrite, &token), 0);
  hold_other_ = true;
  ASSERT_TRUE(Upcall(31, DFUSE_LEASE_READ));
  Message m;
  EXPECT_FALSE(Next(&m, milliseconds(200)));
  const nlohmann::json state = stats_.ToJson()["state"]["kernel_leases"];
  ASSERT_EQ(state["upcalls_unanswered"].size(), 1u) << state.dump();
  const nlohmann::json& upcall = state["upcalls_unanswered"][0];
  EXPECT_EQ(upcall["unique"], 31);
  EXPECT_EQ(upcall["mode"], "read");
  EXPECT_EQ(upcall["serving"], 1) << "a worker waits in the agent for it";
  EXPECT_GE(upcall["age_ms"].get<int64_t>(), 150);
  EXPECT_EQ(state["upcalls_queued"], 0);

  hold_other_ = false;
  ASSERT_TRUE(Next(&m));
  EXPECT_EQ(m.header.unique, 31u);
  EXPECT_TRUE(stats_.ToJson()["state"]["kernel_leases"]["upcalls_unanswered"].empty());
}

}  // namespace
}  // namespace dfuse
