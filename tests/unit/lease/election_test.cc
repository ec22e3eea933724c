// The etcd election (lease/election.h) against a real etcd that each test
// starts on free loopback ports with a temporary data directory. Skipped,
// saying why, where etcd or etcdctl is not installed (Debian etcd-server,
// etcd-client; tools/setup-deps.sh).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "lease/election.h"

extern char** environ;

namespace dfuse::lease {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool OnPath(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class ElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!OnPath("etcd") || !OnPath("etcdctl")) {
      GTEST_SKIP() << "etcd/etcdctl not installed (Debian etcd-server, etcd-client)";
    }
    char tmpl[] = "/tmp/dfuse-etcd-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string client = "http://127.0.0.1:" + std::to_string(FreePort());
    const std::string peer = "http://127.0.0.1:" + std::to_string(FreePort());
    endpoint_ = client.substr(7);
    const std::string log = dir_ + "/etcd.log";
    std::vector<std::string> argv = {"etcd",
                                     "--name=t",
                                     "--data-dir=" + dir_ + "/data",
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=t=" + peer,
                                     "--logger=zap",
                                     "--log-level=error"};
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    ASSERT_EQ(posix_spawnp(&etcd_, "etcd", &actions, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    // Healthy once the election keys can be read.
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    std::string error;
    while (!Election(Options("probe")).Check(&error)) {
      ASSERT_LT(Clock::now(), deadline) << "etcd did not start: " << error;
      std::this_thread::sleep_for(milliseconds(100));
    }
  }

  void TearDown() override {
    if (etcd_ > 0) {
      kill(etcd_, SIGCONT);
      kill(etcd_, SIGKILL);
      waitpid(etcd_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  ElectionOptions Options(const std::string& proposal) const {
    ElectionOptions o;
    o.endpoints = endpoint_;
    o.name = "test";
    o.proposal = proposal;
    o.ttl_s = 2;
    return o;
  }

  std::string dir_;
  std::string endpoint_;
  pid_t etcd_ = -1;
};

TEST_F(ElectionTest, FirstCandidateLeadsOthersFollow) {
  Election a(Options("a:1")), b(Options("b:2"));
  std::string error;
  ASSERT_TRUE(a.Check(&error)) << error;
  ASSERT_TRUE(b.Check(&error)) << error;
  const ElectionRound ra = a.TryOnce();
  ASSERT_EQ(ra.kind, ElectionRound::kLeader) << ra.error;
  EXPECT_EQ(ra.epoch, 1u);
  const ElectionRound rb = b.TryOnce();
  ASSERT_EQ(rb.kind, ElectionRound::kFollower) << rb.error;
  EXPECT_EQ(rb.leader, "a:1");
  EXPECT_TRUE(a.StillLeader());
  EXPECT_FALSE(b.StillLeader());
}

TEST_F(ElectionTest, ResignHandsOverWithTheNextEpoch) {
  Election a(Options("a:1")), b(Options("b:2"));
  std::string error;
  ASSERT_TRUE(a.Check(&error) && b.Check(&error)) << error;
  ASSERT_EQ(a.TryOnce().kind, ElectionRound::kLeader);
  a.Resign();
  EXPECT_FALSE(a.StillLeader());
  const ElectionRound rb = b.TryOnce();
  ASSERT_EQ(rb.kind, ElectionRound::kLeader) << rb.error;
  EXPECT_EQ(rb.epoch, 2u);
  // And back: epochs only grow.
  b.Resign();
  const ElectionRound ra = a.TryOnce();
  ASSERT_EQ(ra.kind, ElectionRound::kLeader) << ra.error;
  EXPECT_EQ(ra.epoch, 3u);
}

// The leader's renewals stop (etcd frozen): it must notice within the TTL,
// and once etcd is back the leader key has expired, so another candidate
// wins with a higher epoch.
TEST_F(ElectionTest, LeaderNoticesLostRenewalsAndKeyExpires) {
  Election a(Options("a:1")), b(Options("b:2"));
  std::string error;
  ASSERT_TRUE(a.Check(&error) && b.Check(&error)) << error;
  ASSERT_EQ(a.TryOnce().kind, ElectionRound::kLeader);
  std::this_thread::sleep_for(milliseconds(1500));
  ASSERT_TRUE(a.StillLeader());  // renewals arrive
  ASSERT_EQ(kill(etcd_, SIGSTOP), 0);
  const auto stopped = Clock::now();
  while (a.StillLeader() && Clock::now() - stopped < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  const auto noticed = Clock::now() - stopped;
  EXPECT_FALSE(a.StillLeader());
  EXPECT_LT(noticed, milliseconds(2000));  // before the 2 s TTL could run out
  ASSERT_EQ(kill(etcd_, SIGCONT), 0);
  a.Resign();  // as the manager does on exit (the revoke may or may not get through)
  const auto resumed = Clock::now();
  ElectionRound rb;
  while ((rb = b.TryOnce()).kind != ElectionRound::kLeader &&
         Clock::now() - resumed < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_EQ(rb.kind, ElectionRound::kLeader) << rb.error;
  EXPECT_EQ(rb.epoch, 2u);
}

TEST_F(ElectionTest, UnreachableEtcdIsAClearError) {
  ElectionOptions o = Options("a:1");
  o.endpoints = "127.0.0.1:" + std::to_string(FreePort());
  Election a(o);
  std::string error;
  EXPECT_FALSE(a.Check(&error));
  EXPECT_NE(error.find("cannot reach etcd at " + o.endpoints), std::string::npos) << error;
}

TEST(ElectionNoEtcdTest, MissingEtcdctlIsAClearError) {
  ElectionOptions o;
  o.endpoints = "127.0.0.1:1";
  o.etcdctl = "/nonexistent/etcdctl";
  Election a(o);
  std::string error;
  EXPECT_FALSE(a.Check(&error));
  EXPECT_NE(error.find("etcd-client"), std::string::npos) << error;
}

}  // namespace
}  // namespace dfuse::lease
