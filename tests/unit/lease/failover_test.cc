// A lease agent given several managers (LeaseAgentOptions.manager =
// "a,b,c"): it skips dead addresses and standbys, and when the active
// manager goes away it lands on the next one and reclaims its leases there.
// In-process managers on 127.0.0.1; the election itself is election_test's.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "lease/agent.h"
#include "lease/manager_service.h"

namespace dfuse::lease {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kF = 10;

std::unique_ptr<ManagerServer> StartManager(bool standby, uint64_t epoch, uint64_t reclaim_ms = 0) {
  ManagerOptions o;
  o.standby = standby;
  o.epoch = epoch;
  o.term_ms = 1000;
  o.reclaim_ms = reclaim_ms;
  std::string error;
  auto server = ManagerServer::Start(o, &error);
  EXPECT_NE(server, nullptr) << error;
  return server;
}

std::string Address(const ManagerServer& server) {
  return "127.0.0.1:" + std::to_string(server.port());
}

uint64_t Stat(const ManagerServer& server, const char* name) {
  return server.Stats()["lease"].value(name, uint64_t{0});
}

std::unique_ptr<LeaseAgent> MakeAgent(const std::string& managers, StatsRegistry* stats) {
  LeaseAgentOptions o;
  o.manager = managers;
  o.name = "node";
  o.drift_margin = milliseconds(50);
  return std::make_unique<LeaseAgent>(
      o, [](uint64_t, LeaseMode, std::chrono::milliseconds) {}, stats);
}

// A free port that nobody listens on (for a "dead manager" address).
std::string DeadAddress() {
  auto probe = StartManager(false, 1);
  const std::string address = Address(*probe);
  probe->Shutdown();
  return address;
}

TEST(LeaseFailoverTest, StandbyRefusesHelloAndNamesTheLeader) {
  auto active = StartManager(false, 1);
  auto standby = StartManager(true, 0);
  standby->SetLeader(Address(*active));
  EXPECT_FALSE(standby->Stats()["lease"]["active"].get<bool>());
  EXPECT_EQ(standby->Stats()["lease"]["leader"], Address(*active));

  // Standby first: the agent follows the refusal's hint to the leader.
  StatsRegistry stats;
  auto agent = MakeAgent(Address(*standby) + "," + Address(*active), &stats);
  std::string error;
  ASSERT_EQ(agent->Start(milliseconds(3000), &error), 0) << error;
  uint64_t token = 0;
  ASSERT_EQ(agent->Acquire(kF, LeaseMode::kWrite, &token), 0);
  EXPECT_EQ(token >> 40, 1u);  // epoch 1's token
  EXPECT_EQ(Stat(*active, "sessions"), 1u);
  agent->Shutdown();
}

TEST(LeaseFailoverTest, SkipsDeadAddresses) {
  auto active = StartManager(false, 1);
  StatsRegistry stats;
  auto agent = MakeAgent(DeadAddress() + ", " + DeadAddress() + "," + Address(*active), &stats);
  std::string error;
  ASSERT_EQ(agent->Start(milliseconds(5000), &error), 0) << error;
  uint64_t token = 0;
  EXPECT_EQ(agent->Acquire(kF, LeaseMode::kRead, &token), 0);
  agent->Shutdown();
}

TEST(LeaseFailoverTest, StartFailsWhenNoManagerIsActive) {
  auto standby = StartManager(true, 0);
  StatsRegistry stats;
  auto agent = MakeAgent(Address(*standby) + "," + DeadAddress(), &stats);
  std::string error;
  EXPECT_EQ(agent->Start(milliseconds(500), &error), EIO);
  EXPECT_NE(error.find(Address(*standby)), std::string::npos) << error;
}

// The active manager dies; a standby is elected with the next epoch and
// opens a reclaim window; the agent reconnects there, keeps its WRITE lease
// (same token) and later grants carry the new epoch.
TEST(LeaseFailoverTest, AgentReclaimsOnTheNewLeader) {
  auto first = StartManager(false, 1);
  auto second = StartManager(true, 0, /*reclaim_ms=*/600);
  second->SetLeader(Address(*first));
  StatsRegistry stats;
  auto agent = MakeAgent(Address(*first) + "," + Address(*second), &stats);
  std::string error;
  ASSERT_EQ(agent->Start(milliseconds(3000), &error), 0) << error;
  uint64_t token = 0;
  ASSERT_EQ(agent->Acquire(kF, LeaseMode::kWrite, &token), 0);

  first->Shutdown();
  second->SetLeader("");
  std::this_thread::sleep_for(milliseconds(100));  // the agent knocks on a standby meanwhile
  second->Activate(2);
  const auto activated = Clock::now();
  while (Stat(*second, "reclaims") < 1 && Clock::now() - activated < milliseconds(2000)) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(Stat(*second, "reclaims"), 1u);
  EXPECT_EQ(Stat(*second, "epoch"), 2u);
  uint64_t held_token = 0;
  EXPECT_TRUE(agent->Holds(kF, LeaseMode::kWrite, &held_token));
  EXPECT_EQ(held_token, token);

  // Released and acquired again after the window: a token of epoch 2.
  agent->Release(kF);
  std::this_thread::sleep_for(milliseconds(50));
  ASSERT_EQ(agent->Acquire(kF, LeaseMode::kWrite, &token), 0);
  EXPECT_EQ(token >> 40, 2u);
  agent->Shutdown();
}

// Busy at the moment the manager dies: each agent is in the middle of a
// revoke (its handler still flushing, the ack not sent) and waits for a
// lease the other holds. The manager still counts a lease until its revoke
// is acked, and the new leader must too: each agent reclaims what its
// running revoke takes away, or the new leader could hand it to the other
// node before the flush is done. (The ack of the old revoke is lost with
// the stream; the new leader revokes again.)
TEST(LeaseFailoverTest, BusyAgentsReclaimLeasesWhoseRevokeIsStillRunning) {
  constexpr uint64_t kA = 21, kB = 22, kC = 23;
  auto first = StartManager(false, 1);
  auto second = StartManager(true, 0, /*reclaim_ms=*/800);
  second->SetLeader(Address(*first));
  const std::string managers = Address(*first) + "," + Address(*second);

  std::atomic<bool> block{true};
  std::atomic<int> blocked{0};
  // Revokes of `gfid` wait for `block` to clear.
  auto blocking = [&](uint64_t gfid) {
    return [&, gfid](uint64_t g, LeaseMode, std::chrono::milliseconds) {
      if (g != gfid || !block) return;
      blocked++;
      while (block) std::this_thread::sleep_for(milliseconds(5));
    };
  };
  LeaseAgentOptions o;
  o.manager = managers;
  o.drift_margin = milliseconds(50);
  o.name = "busy0";
  StatsRegistry stats0;
  LeaseAgent node0(o, blocking(kA), &stats0);
  o.name = "busy1";
  StatsRegistry stats1;
  LeaseAgent node1(o, blocking(kC), &stats1);
  std::string error;
  ASSERT_EQ(node0.Start(milliseconds(3000), &error), 0) << error;
  ASSERT_EQ(node1.Start(milliseconds(3000), &error), 0) << error;

  uint64_t token0 = 0, token1 = 0, kc_token = 0;
  ASSERT_EQ(node0.Acquire(kA, LeaseMode::kWrite, &token0), 0);
  ASSERT_EQ(node0.Acquire(kB, LeaseMode::kRead, &token0), 0);
  ASSERT_EQ(node1.Acquire(kC, LeaseMode::kWrite, &kc_token), 0);
  // Each asks for what the other writes: both revokes block.
  std::thread reader([&] { EXPECT_EQ(node1.Acquire(kA, LeaseMode::kRead, &token1), 0); });
  std::thread writer([&] {
    EXPECT_EQ(node0.Acquire(kC, LeaseMode::kWrite, &token0), 0);
    EXPECT_EQ(token0 >> 40, 2u);  // granted by the new leader
  });
  const auto start = Clock::now();
  while (blocked < 2 && Clock::now() - start < milliseconds(2000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(blocked, 2);

  first->Shutdown();
  second->SetLeader("");
  std::this_thread::sleep_for(milliseconds(100));  // the agents knock on a standby meanwhile
  second->Activate(2);
  const auto activated = Clock::now();
  while (Stat(*second, "sessions") < 2 && Clock::now() - activated < milliseconds(1000)) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::this_thread::sleep_for(milliseconds(50));
  // node0: kA (WRITE, its revoke running) and kB; node1: kC (WRITE, same).
  EXPECT_EQ(Stat(*second, "reclaims"), 3u);
  EXPECT_TRUE(node0.Holds(kB, LeaseMode::kRead));
  EXPECT_FALSE(node0.Holds(kA, LeaseMode::kWrite));  // not trusted while revoked
  EXPECT_FALSE(node1.Holds(kC, LeaseMode::kRead));

  block = false;  // the flushes finish; the new leader's revokes follow
  reader.join();
  writer.join();
  EXPECT_TRUE(node1.Holds(kA, LeaseMode::kRead));
  node0.Shutdown();
  node1.Shutdown();
}

}  // namespace
}  // namespace dfuse::lease
