// A lease agent given several managers (LeaseAgentOptions.manager =
// "a,b,c"): it skips dead addresses and standbys, and when the active
// manager goes away it lands on the next one and reclaims its leases there.
// In-process managers on 127.0.0.1; the election itself is election_test's.
#include <gtest/gtest.h>

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
      o, [](uint64_t, LeaseMode) {}, stats);
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

}  // namespace
}  // namespace dfuse::lease
