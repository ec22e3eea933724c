// Tests of the lease manager service and the lease agent together: an
// in-process manager on 127.0.0.1 and several agents, over real gRPC. Terms
// are short (a few hundred ms) so that expiry and reclaim run in a second.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "lease/agent.h"
#include "lease/manager_service.h"

namespace dfuse::lease {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kF = 10;
constexpr uint64_t kG = 11;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

// Events from every node in one order: "A revoke-begin f10 N", "B granted
// f10 W", ...
class EventLog {
 public:
  void Add(std::string event) {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> events_;
};

const char* Name(LeaseMode mode) {
  return mode == LeaseMode::kWrite ? "W" : mode == LeaseMode::kRead ? "R" : "N";
}

// One client node: an agent whose revoke handler logs, optionally sleeps
// (a slow flush), and takes the node's file lock exclusively, as a daemon
// serializes its cached I/O with revocation.
class Node {
 public:
  // With `keep_on_upgrade`, the node keeps its READ cache across an
  // upgrade (LeaseAgentOptions::before_upgrade), logging "keep".
  Node(const std::string& name, int port, EventLog* log, milliseconds flush = milliseconds(0),
       uint64_t client_id = 0, milliseconds link_delay = milliseconds(0),
       bool keep_on_upgrade = false, bool lingers = false)
      : name_(name), log_(log), flush_(flush) {
    LeaseAgentOptions o;
    o.manager = "127.0.0.1:" + std::to_string(port);
    o.name = name;
    o.client_id = client_id;
    o.emulated_rtt = link_delay;
    o.drift_margin = milliseconds(50);
    o.lingers = lingers;
    if (keep_on_upgrade) {
      o.before_upgrade = [this](uint64_t gfid, uint64_t) {
        log_->Add(name_ + " keep f" + std::to_string(gfid));
      };
    }
    agent_ = std::make_unique<LeaseAgent>(
        o,
        [this](uint64_t gfid, LeaseMode to, milliseconds linger) {
          last_linger_ms_ = linger.count();
          last_revoked_token_ = agent_->RevokedWriteToken(gfid);
          Handle(gfid, to);
        },
        &stats_);
  }

  int Start() {
    std::string error;
    const int err = agent_->Start(milliseconds(3000), &error);
    EXPECT_EQ(err, 0) << error;
    return err;
  }

  // Acquire, logging the grant.
  uint64_t MustAcquire(uint64_t gfid, LeaseMode mode) {
    uint64_t token = 0;
    EXPECT_EQ(agent_->Acquire(gfid, mode, &token), 0) << name_;
    log_->Add(name_ + " granted f" + std::to_string(gfid) + " " + Name(mode));
    return token;
  }

  LeaseAgent& agent() { return *agent_; }
  std::shared_mutex& file_lock() { return file_lock_; }
  uint64_t counter(const std::string& name) { return stats_.GetCounter(name)->Get(); }
  // The agent's state, as the node's stats dump has it.
  nlohmann::json state() {
    return stats_.ToJson()["state"][fmt::format("lease_agent.{:x}", agent_->client_id())];
  }
  int64_t last_linger_ms() const { return last_linger_ms_; }
  // RevokedWriteToken, asked by the last handler call.
  uint64_t last_revoked_token() const { return last_revoked_token_; }

  int handled(uint64_t gfid, LeaseMode to) {
    std::lock_guard<std::mutex> l(mu_);
    return handled_[{gfid, to}];
  }
  int handled_total() {
    std::lock_guard<std::mutex> l(mu_);
    int n = 0;
    for (const auto& [key, count] : handled_) n += count;
    return n;
  }

 private:
  void Handle(uint64_t gfid, LeaseMode to) {
    const std::string what = " f" + std::to_string(gfid) + " " + Name(to);
    log_->Add(name_ + " revoke-begin" + what);
    {
      std::unique_lock<std::shared_mutex> l(file_lock_);
      if (flush_.count() > 0) std::this_thread::sleep_for(flush_);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      handled_[{gfid, to}]++;
    }
    log_->Add(name_ + " revoke-end" + what);
  }

  const std::string name_;
  EventLog* log_;
  const milliseconds flush_;
  std::atomic<int64_t> last_linger_ms_{-1};  // of the last handler call
  std::atomic<uint64_t> last_revoked_token_{UINT64_MAX};
  StatsRegistry stats_;
  std::shared_mutex file_lock_;
  std::mutex mu_;
  std::map<std::pair<uint64_t, LeaseMode>, int> handled_;
  std::unique_ptr<LeaseAgent> agent_;  // last: stopped before the rest goes
};

class LeaseServiceTest : public ::testing::Test {
 protected:
  void StartManager(uint64_t epoch, uint64_t term_ms, uint64_t reclaim_ms = 0, int port = 0,
                    uint64_t min_hold_ms = 2) {
    ManagerOptions o;
    o.listen = "127.0.0.1:" + std::to_string(port);
    o.epoch = epoch;
    o.term_ms = term_ms;
    o.min_hold_ms = min_hold_ms;
    o.reclaim_ms = reclaim_ms;
    std::string error;
    manager_ = ManagerServer::Start(o, &error);
    ASSERT_NE(manager_, nullptr) << error;
    port_ = manager_->port();
  }

  std::unique_ptr<Node> NewNode(const std::string& name, milliseconds flush = milliseconds(0)) {
    auto node = std::make_unique<Node>(name, port_, &log_, flush);
    node->Start();
    return node;
  }
  std::unique_ptr<Node> NewKeepingNode(const std::string& name) {
    auto node = std::make_unique<Node>(name, port_, &log_, milliseconds(0), 0, milliseconds(0),
                                       /*keep_on_upgrade=*/true);
    node->Start();
    return node;
  }
  std::unique_ptr<Node> NewLingeringNode(const std::string& name) {
    auto node = std::make_unique<Node>(name, port_, &log_, milliseconds(0), 0, milliseconds(0),
                                       /*keep_on_upgrade=*/false, /*lingers=*/true);
    node->Start();
    return node;
  }
  // Where `event` is in the log (its size if absent).
  long At(const std::string& event) {
    const std::vector<std::string> events = log_.events();
    return std::find(events.begin(), events.end(), event) - events.begin();
  }

  uint64_t ManagerStat(const std::string& key) {
    return manager_->Stats()["lease"][key].get<uint64_t>();
  }

  // Starts `a`, which takes WRITE on `files` files from kF on, then has a new
  // node take them all at once (a thread each); returns how long that took.
  int64_t TakeFilesFrom(LeaseAgent& a, int files) {
    std::string error;
    EXPECT_EQ(a.Start(milliseconds(3000), &error), 0) << error;
    for (int i = 0; i < files; i++) {
      uint64_t token = 0;
      EXPECT_EQ(a.Acquire(kF + i, LeaseMode::kWrite, &token), 0);
    }
    auto b = NewNode("B");
    const auto start = Clock::now();
    std::vector<std::thread> takers;
    for (int i = 0; i < files; i++) {
      takers.emplace_back([&, i] { b->MustAcquire(kF + i, LeaseMode::kWrite); });
    }
    for (std::thread& t : takers) t.join();
    return MsSince(start);
  }

  EventLog log_;
  std::unique_ptr<ManagerServer> manager_;
  int port_ = 0;
};

TEST_F(LeaseServiceTest, StartFailsClearlyWhenManagerUnreachable) {
  StartManager(1, 500);
  const int port = port_;
  manager_.reset();  // nothing listens there any more
  LeaseAgentOptions o;
  o.manager = "127.0.0.1:" + std::to_string(port);
  StatsRegistry stats;
  LeaseAgent agent(o, nullptr, &stats);
  std::string error;
  const auto start = Clock::now();
  EXPECT_EQ(agent.Start(milliseconds(300), &error), EIO);
  EXPECT_LT(MsSince(start), 2000);
  EXPECT_NE(error.find("cannot reach the lease manager at 127.0.0.1:"), std::string::npos) << error;
  uint64_t token;
  EXPECT_EQ(agent.Acquire(kF, LeaseMode::kRead, &token), EINTR);
}

TEST_F(LeaseServiceTest, GrantThenDowngradeForAReader) {
  StartManager(1, 2000);
  auto a = NewNode("A");
  auto b = NewNode("B");
  const uint64_t token = a->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_EQ(token >> 40, 1u) << "tokens carry the epoch";
  uint64_t held_token = 0;
  EXPECT_TRUE(a->agent().Holds(kF, LeaseMode::kWrite, &held_token));
  EXPECT_EQ(held_token, token);
  EXPECT_FALSE(b->agent().Holds(kF, LeaseMode::kRead));

  EXPECT_EQ(b->MustAcquire(kF, LeaseMode::kRead), 0u);
  EXPECT_EQ(a->handled(kF, LeaseMode::kRead), 1) << "the writer is downgraded, not dropped";
  EXPECT_TRUE(a->agent().Holds(kF, LeaseMode::kRead));
  EXPECT_FALSE(a->agent().Holds(kF, LeaseMode::kWrite));
  EXPECT_TRUE(b->agent().Holds(kF, LeaseMode::kRead));

  // Already held: answered without the manager.
  const uint64_t requests = a->counter("lease.requests");
  EXPECT_EQ(a->agent().Acquire(kF, LeaseMode::kRead, &held_token), 0);
  EXPECT_EQ(a->counter("lease.requests"), requests);

  b->agent().Release(kF);
  EXPECT_FALSE(b->agent().Holds(kF, LeaseMode::kRead));
  const auto stats = manager_->Stats();
  EXPECT_GE(stats["latencies"]["lease.acquire_to_grant"]["count"].get<uint64_t>(), 2u);
  EXPECT_EQ(stats["latencies"]["lease.revoke_to_ack"]["count"].get<uint64_t>(), 1u);
}

// The handler of a revoke that takes a WRITE lease writes back under its
// token, which the agent no longer counts as held; nothing else has one.
TEST_F(LeaseServiceTest, ARevokeHandlerKnowsTheTokenOfTheWriteLeaseItTakes) {
  StartManager(1, 2000);
  auto a = NewNode("A");
  auto b = NewNode("B");
  const uint64_t token = a->MustAcquire(kF, LeaseMode::kWrite);
  b->MustAcquire(kF, LeaseMode::kRead);
  EXPECT_EQ(a->handled(kF, LeaseMode::kRead), 1);
  EXPECT_EQ(a->last_revoked_token(), token);
  EXPECT_EQ(a->agent().RevokedWriteToken(kF), 0u) << "only while the revoke is handled";
  auto c = NewNode("C");
  c->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_EQ(a->handled(kF, LeaseMode::kNone), 1);
  EXPECT_EQ(a->last_revoked_token(), 0u) << "a READ lease has no token";
}

// A revoke that crosses this node's Release (the manager read another
// node's request first) finds nothing held: it is acked at once, giving
// everything up, without running the handler, and the other node is granted.
TEST_F(LeaseServiceTest, ARevokeThatCrossesAReleaseIsAckedWithoutTheHandler) {
  StartManager(1, 5000);
  // A's messages take half a second to leave, so its Release reaches the
  // manager long after B's Acquire, which is answered by revoking A.
  auto a = std::make_unique<Node>("A", port_, &log_, milliseconds(0), 0, milliseconds(500));
  ASSERT_EQ(a->Start(), 0);
  auto b = NewNode("B");
  a->MustAcquire(kF, LeaseMode::kWrite);
  a->agent().Release(kF);
  const Clock::time_point start = Clock::now();
  b->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_EQ(a->counter("lease.revokes"), 1u) << "B's Acquire did not overtake A's Release";
  EXPECT_EQ(a->counter("lease.revokes_of_nothing"), 1u);
  EXPECT_EQ(a->handled_total(), 0);
  EXPECT_LT(MsSince(start), 4000);
  EXPECT_FALSE(a->agent().Holds(kF, LeaseMode::kRead));
}

// Two writers take turns: every handoff revokes the other, whose handler
// (a slow flush) must finish before the new writer's Acquire returns.
TEST_F(LeaseServiceTest, WritersPingPongInOrder) {
  StartManager(1, 2000);
  auto a = NewNode("A", milliseconds(15));
  auto b = NewNode("B", milliseconds(15));
  Node* nodes[2] = {a.get(), b.get()};
  const char* names[2] = {"A", "B"};
  uint64_t last_token = 0;
  for (int i = 0; i < 10; i++) {
    const uint64_t token = nodes[i % 2]->MustAcquire(kF, LeaseMode::kWrite);
    EXPECT_GT(token, last_token) << "every WRITE grant carries a larger token";
    last_token = token;
  }
  // Check the interleaving: each "X granted" after the first is preceded by
  // the other node's complete revoke.
  const std::vector<std::string> events = log_.events();
  int grants = 0;
  std::string last_other_event[2];
  for (const std::string& e : events) {
    for (int n = 0; n < 2; n++) {
      if (e.rfind(names[n], 0) != 0) continue;
      if (e.find("granted") != std::string::npos) {
        if (grants++ > 0) {
          EXPECT_EQ(last_other_event[1 - n], std::string(names[1 - n]) + " revoke-end f10 N")
              << "grant #" << grants << " to " << names[n];
        }
      }
      last_other_event[n] = e;
    }
  }
  EXPECT_EQ(grants, 10);
  EXPECT_EQ(a->handled(kF, LeaseMode::kNone) + b->handled(kF, LeaseMode::kNone), 9);
}

// Revokes to many readers go out in parallel: the writer waits for the
// slowest flush, not for their sum.
TEST_F(LeaseServiceTest, WriterRevokesReadersInParallel) {
  StartManager(1, 2000);
  std::vector<std::unique_ptr<Node>> readers;
  for (int i = 0; i < 5; i++) {
    readers.push_back(NewNode("R" + std::to_string(i), milliseconds(150)));
    readers.back()->MustAcquire(kF, LeaseMode::kRead);
  }
  auto w = NewNode("W");
  const auto start = Clock::now();
  w->MustAcquire(kF, LeaseMode::kWrite);
  const int64_t elapsed = MsSince(start);
  EXPECT_GE(elapsed, 140);
  EXPECT_LT(elapsed, 5 * 150 - 100) << "revokes were handled one after another";
  for (auto& r : readers) {
    EXPECT_EQ(r->handled(kF, LeaseMode::kNone), 1);
    EXPECT_FALSE(r->agent().Holds(kF, LeaseMode::kRead));
  }
  EXPECT_TRUE(w->agent().Holds(kF, LeaseMode::kWrite));
}

// One node's revokes of different files run side by side on the agent's
// revoke threads (a slow write-back of one file does not hold up the
// others), while one file's handler never overlaps itself.
TEST_F(LeaseServiceTest, OneNodesRevokesOfDifferentFilesRunSideBySide) {
  StartManager(1, 2000);
  constexpr int kFiles = 4;
  constexpr milliseconds kFlush(150);
  std::mutex mu;
  std::map<uint64_t, int> running_per_file;
  int running = 0, most_running = 0, overlaps = 0, handled = 0;
  LeaseAgentOptions o;
  o.manager = "127.0.0.1:" + std::to_string(port_);
  o.name = "A";
  o.drift_margin = milliseconds(50);
  StatsRegistry stats;
  LeaseAgent a(
      o,
      [&](uint64_t gfid, LeaseMode, std::chrono::milliseconds) {
        {
          std::lock_guard<std::mutex> l(mu);
          if (running_per_file[gfid]++ > 0) overlaps++;
          most_running = std::max(most_running, ++running);
        }
        std::this_thread::sleep_for(kFlush);
        std::lock_guard<std::mutex> l(mu);
        running_per_file[gfid]--;
        running--;
        handled++;
      },
      &stats);
  const int64_t elapsed = TakeFilesFrom(a, kFiles);
  EXPECT_GE(elapsed, kFlush.count() - 10);
  EXPECT_LT(elapsed, kFiles * kFlush.count() - 100) << "the files' revokes ran one after another";
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(handled, kFiles);
  EXPECT_GE(most_running, 2);
  EXPECT_EQ(overlaps, 0);
}

// While a revoke is being handled, the state dumps say who waits for whom:
// the manager lists the holder's unanswered revoke and the waiter, the
// holder's agent the revoke job, the waiter's agent its request.
TEST_F(LeaseServiceTest, TheStateDumpsSayWhoWaitsForWhat) {
  StartManager(1, 5000);
  auto a = NewNode("A", milliseconds(1500));
  auto b = NewNode("B");
  a->MustAcquire(kF, LeaseMode::kWrite);
  std::thread taker([&] { b->MustAcquire(kF, LeaseMode::kWrite); });
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (At("A revoke-begin f10 N") == static_cast<long>(log_.events().size()) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_LT(At("A revoke-begin f10 N"), static_cast<long>(log_.events().size()));
  const std::string gfid = fmt::format("{:x}", kF);
  const std::string a_id = fmt::format("{:x}", a->agent().client_id());
  const std::string b_id = fmt::format("{:x}", b->agent().client_id());

  const nlohmann::json manager = manager_->Stats()["state"];
  ASSERT_EQ(manager["files_waiting"].size(), 1u) << manager.dump();
  const nlohmann::json& file = manager["files_waiting"][0];
  EXPECT_EQ(file["gfid"], gfid);
  ASSERT_EQ(file["holders"].size(), 1u) << file.dump();
  EXPECT_EQ(file["holders"][0]["client"], a_id);
  EXPECT_EQ(file["holders"][0]["revoke"]["to"], "none") << file.dump();
  ASSERT_EQ(file["waiters"].size(), 1u) << file.dump();
  EXPECT_EQ(file["waiters"][0]["client"], b_id);
  EXPECT_EQ(file["waiters"][0]["mode"], "write");
  EXPECT_EQ(manager["streams"].size(), 2u);

  const nlohmann::json holder = a->state();
  EXPECT_EQ(holder["client_id"], a_id);
  EXPECT_TRUE(holder["connected"].get<bool>());
  ASSERT_EQ(holder["files_waiting"].size(), 1u) << holder.dump();
  EXPECT_EQ(holder["files_waiting"][0]["gfid"], gfid);
  EXPECT_EQ(holder["files_waiting"][0]["revokes"], 1);
  EXPECT_TRUE(holder["files_waiting"][0]["job_running"].get<bool>());
  EXPECT_EQ(holder["files_waiting"][0]["revoked_from"], "write");

  const nlohmann::json waiter = b->state();
  ASSERT_EQ(waiter["files_waiting"].size(), 1u) << waiter.dump();
  const nlohmann::json& request = waiter["files_waiting"][0]["request"];
  EXPECT_EQ(request["mode"], "write") << waiter.dump();
  EXPECT_EQ(request["waiters"], 1);
  EXPECT_FALSE(request["done"].get<bool>());
  EXPECT_FALSE(request["held_back"].get<bool>());
  taker.join();

  // Once granted, nobody waits for anything: the manager and B at once, A
  // once its revoke thread is past the ack, which it sends before it ends
  // the job (the grant may reach B first).
  EXPECT_TRUE(manager_->Stats()["state"]["files_waiting"].empty());
  EXPECT_TRUE(b->state()["files_waiting"].empty());
  const auto settled = Clock::now() + std::chrono::seconds(5);
  while (!a->state()["files_waiting"].empty() && Clock::now() < settled) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_TRUE(a->state()["files_waiting"].empty()) << a->state().dump();
}

// Revoke handlers that wait for each other (as dfuse's drains wait for
// the node's users, who may wait for other nodes) still all run: when every
// revoke thread is busy, the agent starts another.
TEST_F(LeaseServiceTest, BusyRevokeThreadsDoNotHoldUpOtherFilesRevokes) {
  StartManager(1, 5000);
  constexpr int kFiles = 4;
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;
  bool all_ran_together = true;
  LeaseAgentOptions o;
  o.manager = "127.0.0.1:" + std::to_string(port_);
  o.name = "A";
  o.revoke_threads = 1;
  StatsRegistry stats;
  LeaseAgent a(
      o,
      [&](uint64_t, LeaseMode, milliseconds) {
        std::unique_lock<std::mutex> l(mu);
        running++;
        cv.notify_all();
        // Each handler waits until every file's handler runs.
        if (!cv.wait_for(l, std::chrono::seconds(10), [&] { return running >= kFiles; })) {
          all_ran_together = false;
        }
      },
      &stats);
  TakeFilesFrom(a, kFiles);
  std::lock_guard<std::mutex> l(mu);
  EXPECT_TRUE(all_ran_together) << "a revoke waited for a busy thread";
  EXPECT_EQ(running, kFiles);
  EXPECT_GE(
      stats.ToJson()["state"][fmt::format("lease_agent.{:x}", a.client_id())]["revoke_threads"]
          .get<int>(),
      kFiles);
}

// Concurrent Acquires of one file on one node share a single request.
TEST_F(LeaseServiceTest, ConcurrentAcquiresShareOneRequest) {
  StartManager(1, 2000);
  auto holder = NewNode("H", milliseconds(100));
  holder->MustAcquire(kF, LeaseMode::kWrite);
  auto n = NewNode("N");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; i++) {
    threads.emplace_back([&] {
      uint64_t token;
      if (n->agent().Acquire(kF, LeaseMode::kRead, &token) == 0) ok++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(n->counter("lease.requests"), 1u);
}

// A READ holder that asks for WRITE drops its READ cache first; the other
// reader is revoked.
TEST_F(LeaseServiceTest, UpgradeDropsReadCacheFirst) {
  StartManager(1, 2000);
  auto a = NewNode("A");
  auto b = NewNode("B");
  a->MustAcquire(kF, LeaseMode::kRead);
  b->MustAcquire(kF, LeaseMode::kRead);
  const uint64_t token = a->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_NE(token, 0u);
  EXPECT_EQ(a->handled(kF, LeaseMode::kNone), 1);
  EXPECT_EQ(b->handled(kF, LeaseMode::kNone), 1);
  EXPECT_TRUE(a->agent().Holds(kF, LeaseMode::kWrite));
  EXPECT_FALSE(b->agent().Holds(kF, LeaseMode::kRead));
}

// With before_upgrade the READ cache is kept out of use instead, and the
// grant says it is still current: nobody wrote between.
TEST_F(LeaseServiceTest, UpgradeKeepsTheReadCacheWhenNobodyWroteBetween) {
  StartManager(1, 2000);
  auto a = NewKeepingNode("A");
  auto b = NewNode("B");
  a->MustAcquire(kF, LeaseMode::kRead);
  b->MustAcquire(kF, LeaseMode::kRead);
  a->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_LT(At("A keep f10"), At("A granted f10 W"));
  EXPECT_EQ(a->handled(kF, LeaseMode::kNone), 0);
  EXPECT_EQ(a->counter("lease.upgrades_kept"), 1u);
  EXPECT_EQ(b->handled(kF, LeaseMode::kNone), 1);
  EXPECT_TRUE(a->agent().Holds(kF, LeaseMode::kWrite));
}

// A node that lingers is revoked as soon as another waits, and its handler
// learns how much of the manager's hold is left; it acks when it is done.
TEST_F(LeaseServiceTest, ALingeringNodeIsRevokedEarlyWithTheRestOfTheHold) {
  StartManager(1, 60000, 0, 0, /*min_hold_ms=*/30000);
  auto a = NewLingeringNode("A");
  auto b = NewNode("B");
  a->MustAcquire(kF, LeaseMode::kWrite);
  b->MustAcquire(kF, LeaseMode::kWrite);  // would wait 30 s for a node that does not linger
  EXPECT_GT(a->last_linger_ms(), 0);
  EXPECT_LE(a->last_linger_ms(), 30000);
  EXPECT_EQ(a->handled(kF, LeaseMode::kNone), 1);
}

// A writer gets the lease between the kept READ lease and the upgrade's
// grant: the kept cache is dropped before the grant applies.
TEST_F(LeaseServiceTest, UpgradeDropsTheKeptCacheWhenAWriterCameBetween) {
  // A long minimum hold keeps A's READ lease until A asks to upgrade, and
  // C's WRITE lease until C is logged as granted.
  StartManager(1, 5000, 0, 0, /*min_hold_ms=*/400);
  auto a = NewKeepingNode("A");
  auto c = NewNode("C");
  a->MustAcquire(kF, LeaseMode::kRead);
  std::thread writer([&] { c->MustAcquire(kF, LeaseMode::kWrite); });
  std::this_thread::sleep_for(milliseconds(100));  // C's request waits for A's hold
  a->MustAcquire(kF, LeaseMode::kWrite);           // gives up READ: C is granted first
  writer.join();
  EXPECT_LT(At("A keep f10"), At("C granted f10 W"));
  EXPECT_LT(At("C granted f10 W"), At("A granted f10 W"));
  EXPECT_LT(At("A revoke-end f10 N"), At("A granted f10 W")) << "A kept a stale cache";
  EXPECT_EQ(a->counter("lease.upgrades_stale"), 1u);
  EXPECT_EQ(a->counter("lease.upgrades_kept"), 0u);
}

// A writer being downgraded asks for WRITE again before its handler is
// done. The upgrade gives up the READ lease, but only once the READ cache
// is dropped (a second handler call): until then the ack must still count
// the node as a reader, or a third node's WRITE would be granted while the
// node still serves reads from the cache (a stale read found under dfuse
// and writethrough by the checker).
TEST_F(LeaseServiceTest, UpgradeDuringADowngradeHoldsTheReadCacheUntilDropped) {
  StartManager(1, 5000);
  auto a = NewNode("A", milliseconds(300));
  auto b = NewNode("B");
  auto c = NewNode("C");
  a->MustAcquire(kF, LeaseMode::kWrite);
  std::thread reader([&] { b->MustAcquire(kF, LeaseMode::kRead); });
  auto logged = [&](const std::string& event) {
    for (const std::string& e : log_.events()) {
      if (e == event) return true;
    }
    return false;
  };
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!logged("A revoke-begin f10 R") && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(logged("A revoke-begin f10 R"));
  std::thread upgrade([&] { a->MustAcquire(kF, LeaseMode::kWrite); });
  std::this_thread::sleep_for(milliseconds(50));  // the upgrade is queued behind the revoke
  std::thread writer([&] { c->MustAcquire(kF, LeaseMode::kWrite); });
  reader.join();
  upgrade.join();
  writer.join();
  const std::vector<std::string> events = log_.events();
  auto at = [&](const std::string& event) {
    return std::find(events.begin(), events.end(), event) - events.begin();
  };
  ASSERT_LT(at("A revoke-end f10 N"), static_cast<long>(events.size())) << "A never dropped";
  EXPECT_LT(at("A revoke-end f10 N"), at("C granted f10 W"))
      << "C got WRITE while A still had its READ cache";
}

// A node that vanishes without releasing keeps its lease for the term: the
// manager cannot know whether it still has dirty data.
TEST_F(LeaseServiceTest, VanishedHolderKeepsLeaseUntilTerm) {
  constexpr int64_t kTerm = 500;
  StartManager(1, kTerm);
  auto a = NewNode("A");
  auto b = NewNode("B");
  const uint64_t a_token = a->MustAcquire(kF, LeaseMode::kWrite);
  a->agent().Shutdown();
  const auto start = Clock::now();
  const uint64_t b_token = b->MustAcquire(kF, LeaseMode::kWrite);
  const int64_t elapsed = MsSince(start);
  // A's last renewal was at most a heartbeat interval (term/3) before it vanished.
  EXPECT_GE(elapsed, kTerm - kTerm / 3 - 20);
  EXPECT_LT(elapsed, kTerm + 400);
  EXPECT_GT(b_token, a_token);
  EXPECT_EQ(ManagerStat("expiries"), 1u);
}

// With the manager gone, a node stops trusting its leases before the
// manager could regrant them, drops its caches, and Acquire fails with EIO
// once the manager has been unreachable for a term.
TEST_F(LeaseServiceTest, LeasesRunOutWithoutTheManager) {
  constexpr int64_t kTerm = 400;
  StartManager(1, kTerm);
  auto a = NewNode("A");
  a->MustAcquire(kF, LeaseMode::kWrite);
  // The agent may see the stream end as soon as Shutdown begins, and
  // Shutdown can take tens of ms on a loaded machine: the lower bound counts
  // from before it, the upper bounds from after.
  const auto stopping = Clock::now();
  manager_->Shutdown();
  const auto start = Clock::now();
  EXPECT_TRUE(a->agent().Holds(kF, LeaseMode::kWrite)) << "valid until the term runs out";
  while (a->agent().Holds(kF, LeaseMode::kWrite) && MsSince(start) < 5000) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  const int64_t trusted = MsSince(start);
  EXPECT_LE(trusted, kTerm - 50 + 20) << "the drift margin is kept";
  for (int i = 0; i < 200 && a->handled(kF, LeaseMode::kNone) == 0; i++) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(a->handled(kF, LeaseMode::kNone), 1) << "caches dropped when the term ran out";
  uint64_t token;
  EXPECT_EQ(a->agent().Acquire(kG, LeaseMode::kRead, &token), EIO);
  EXPECT_GE(MsSince(stopping), kTerm - 20);
  EXPECT_LT(MsSince(start), kTerm + 500);
}

// A caller already waiting for a grant when the manager goes away is woken
// by the broken session and fails with EIO once the manager has been
// unreachable for a term, instead of waiting for a reply that never comes.
TEST_F(LeaseServiceTest, AWaitingAcquireFailsATermAfterTheManagerIsGone) {
  constexpr int64_t kTerm = 400;
  StartManager(1, kTerm);
  // A's write-back takes far longer than the term: B's request is still
  // waiting for A's ack when the manager stops.
  auto a = NewNode("A", milliseconds(3000));
  auto b = NewNode("B");
  a->MustAcquire(kF, LeaseMode::kWrite);
  std::atomic<int> b_result{-1};
  std::thread waiter([&] {
    uint64_t token;
    b_result = b->agent().Acquire(kF, LeaseMode::kWrite, &token);
  });
  for (int i = 0; i < 400 && a->counter("lease.revokes") == 0; i++) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(a->counter("lease.revokes"), 1u) << "B's request reached the manager";
  const auto stopping = Clock::now();
  manager_->Shutdown();
  waiter.join();
  EXPECT_EQ(b_result, EIO);
  EXPECT_GE(MsSince(stopping), kTerm - 20);
  EXPECT_LT(MsSince(stopping), kTerm + 1500) << "woken by the broken session, not by chance";
}

// A restarted manager (next epoch, same address) opens a reclaim window:
// agents reconnect and re-assert their leases, and a conflicting request
// waits for the window to end.
TEST_F(LeaseServiceTest, RestartedManagerReclaims) {
  constexpr uint64_t kTerm = 1000;
  constexpr uint64_t kWindow = 600;
  StartManager(1, kTerm);
  const int port = port_;
  auto a = NewNode("A");
  auto b = NewNode("B");
  const uint64_t a_token = a->MustAcquire(kF, LeaseMode::kWrite);
  b->MustAcquire(kG, LeaseMode::kRead);

  manager_->Shutdown();
  manager_.reset();
  StartManager(2, kTerm, kWindow, port);
  const auto restarted = Clock::now();
  // Both reconnect well inside the window and keep their leases.
  while (ManagerStat("reclaims") < 2 && MsSince(restarted) < 2000) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(ManagerStat("reclaims"), 2u);
  EXPECT_LT(MsSince(restarted), static_cast<int64_t>(kWindow));
  uint64_t token = 0;
  EXPECT_TRUE(a->agent().Holds(kF, LeaseMode::kWrite, &token));
  EXPECT_EQ(token, a_token);
  EXPECT_TRUE(b->agent().Holds(kG, LeaseMode::kRead));
  EXPECT_EQ(a->handled_total(), 0);

  // A newcomer's conflicting request waits for the window, then A is
  // downgraded and the newcomer reads.
  auto c = NewNode("C");
  c->MustAcquire(kF, LeaseMode::kRead);
  EXPECT_GE(MsSince(restarted), static_cast<int64_t>(kWindow) - 20);
  EXPECT_EQ(a->handled(kF, LeaseMode::kRead), 1);
  // The next writer's token comes from the new epoch.
  const uint64_t c_token = c->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_EQ(c_token >> 40, 2u);
  EXPECT_GT(c_token, a_token);
  EXPECT_TRUE(b->agent().Holds(kG, LeaseMode::kRead)) << "unrelated lease untouched";
}

// A node whose stream breaks but that comes back within the term resumes
// its session: its leases are kept, nothing is revoked.
TEST_F(LeaseServiceTest, ShortDisconnectResumesSession) {
  StartManager(1, 2000);
  auto a = std::make_unique<Node>("A", port_, &log_, milliseconds(0), /*client_id=*/42);
  a->Start();
  const uint64_t token = a->MustAcquire(kF, LeaseMode::kWrite);
  a->agent().Shutdown();  // the process "dies" ...
  a = std::make_unique<Node>("A2", port_, &log_, milliseconds(0), /*client_id=*/42);
  a->Start();  // ... and its successor with the same id resumes the session
  auto b = NewNode("B");
  // B's request revokes the resumed session's lease (the agent of A2 holds
  // nothing locally, so it just acks, without its handler).
  const uint64_t b_token = b->MustAcquire(kF, LeaseMode::kWrite);
  EXPECT_GT(b_token, token);
  EXPECT_EQ(a->counter("lease.revokes_of_nothing"), 1u);
  EXPECT_EQ(a->handled_total(), 0);
  EXPECT_EQ(ManagerStat("expiries"), 0u);
}

// Many nodes and threads take READ and WRITE leases on two files at random
// while a checker records who uses what. Use happens under the node's file
// lock and only while Holds() says yes, as a daemon would do; the handler
// takes that lock exclusively. Across nodes, a WRITE user never overlaps
// any other user, and WRITE tokens only grow (what storage fencing
// enforces).
TEST_F(LeaseServiceTest, RandomUseIsExclusive) {
  StartManager(1, 2000);
  std::vector<std::unique_ptr<Node>> nodes;
  for (int i = 0; i < 3; i++) nodes.push_back(NewNode("N" + std::to_string(i), milliseconds(1)));

  // Per file and node: how many threads use READ and WRITE right now.
  struct Use {
    int readers = 0;
    int writers = 0;
  };
  std::mutex check_mu;
  std::map<uint64_t, std::map<Node*, Use>> users;
  std::map<uint64_t, uint64_t> max_token;
  std::vector<std::string> violations;  // guarded by check_mu
  std::atomic<int> uses{0};
  std::atomic<bool> stop{false};
  auto violation = [&](const std::string& what) { violations.push_back(what); };
  auto worker = [&](Node* node, int seed) {
    std::mt19937 rng(seed);
    while (!stop) {
      const uint64_t gfid = rng() % 2 ? kF : kG;
      const LeaseMode mode = rng() % 3 == 0 ? LeaseMode::kWrite : LeaseMode::kRead;
      uint64_t token;
      if (const int err = node->agent().Acquire(gfid, mode, &token); err != 0) {
        std::lock_guard<std::mutex> c(check_mu);
        violation("Acquire failed: errno " + std::to_string(err));
        return;
      }
      std::shared_lock<std::shared_mutex> l(node->file_lock());
      if (!node->agent().Holds(gfid, mode, &token)) continue;  // revoked meanwhile: retry
      {
        std::lock_guard<std::mutex> c(check_mu);
        for (const auto& [other, use] : users[gfid]) {
          if (other == node || use.readers + use.writers == 0) continue;
          if (use.writers > 0 || mode == LeaseMode::kWrite) {
            violation(std::string(Name(mode)) + " use beside another node's use of f" +
                      std::to_string(gfid));
          }
        }
        if (mode == LeaseMode::kWrite) {
          if (token < max_token[gfid])
            violation("WRITE token went back on f" + std::to_string(gfid));
          max_token[gfid] = token;
          users[gfid][node].writers++;
        } else {
          users[gfid][node].readers++;
        }
      }
      uses++;
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
      std::lock_guard<std::mutex> c(check_mu);
      Use& use = users[gfid][node];
      (mode == LeaseMode::kWrite ? use.writers : use.readers)--;
    }
  };
  // Two threads per node: a node's own readers and writers also interleave.
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; i++) threads.emplace_back(worker, nodes[i / 2].get(), i + 1);
  std::this_thread::sleep_for(milliseconds(1500));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations, std::vector<std::string>{});
  EXPECT_GT(uses.load(), 50);
  EXPECT_GT(ManagerStat("revokes"), 10u);
}

// Liveness with every option dfuse's daemon uses at once: the cache kept
// across upgrades (before_upgrade) and revokes (release_keeping), refreshed
// from the hand-offs (refresh_kept) or dropped, lingering, hand-offs with
// the acks, and leases given back at any time (Release, as the reaper
// does). Several threads per node on a few files: every Acquire returns
// within a few seconds. A lost wake-up, a job that never runs or a request
// never sent would leave one waiting; the test then shows both sides'
// state dumps.
TEST_F(LeaseServiceTest, RandomUseWithEveryOptionKeepsMoving) {
  StartManager(1, 5000, 0, 0, /*min_hold_ms=*/1);
  constexpr int kNodes = 3, kThreadsPerNode = 3;
  constexpr uint64_t kFiles = 3;
  constexpr milliseconds kStuck(8000);
  std::vector<std::unique_ptr<StatsRegistry>> stats;
  std::vector<std::unique_ptr<LeaseAgent>> agents;
  std::atomic<int> keeps{0}, refreshes{0}, handoffs{0};
  agents.reserve(kNodes);  // the handlers index it while later agents are added
  for (int n = 0; n < kNodes; n++) {
    stats.push_back(std::make_unique<StatsRegistry>());
    LeaseAgentOptions o;
    o.manager = "127.0.0.1:" + std::to_string(port_);
    o.name = "N" + std::to_string(n);
    o.drift_margin = milliseconds(50);
    o.lingers = true;
    o.before_upgrade = [&](uint64_t, uint64_t) { keeps++; };
    o.release_keeping = [&, n](uint64_t gfid, milliseconds) {
      // A WRITE holder's write-back says what it left (opaque here).
      if (gfid % 2 == 0) agents[n]->HandOff(gfid, "written", "");
      handoffs++;
      return gfid != kF;  // one file's cache can never be kept
    };
    o.refresh_kept = [&](uint64_t, const std::vector<std::string>&) {
      return refreshes++ % 3 != 0;  // and some refreshes give up
    };
    agents.push_back(std::make_unique<LeaseAgent>(
        o,
        [&, n](uint64_t gfid, LeaseMode, milliseconds) {
          if (gfid % 2 == 0) agents[n]->HandOff(gfid, "written", "");
          std::this_thread::sleep_for(std::chrono::microseconds(300));
        },
        stats.back().get()));
    std::string error;
    ASSERT_EQ(agents.back()->Start(milliseconds(3000), &error), 0) << error;
  }

  std::atomic<bool> stop{false};
  std::atomic<int> acquires{0}, releases{0};
  std::mutex mu;
  std::vector<std::string> failures;  // guarded by mu
  // When each thread's Acquire started (0: not in one), for the watchdog.
  std::vector<std::atomic<int64_t>> waiting_since(kNodes * kThreadsPerNode);
  auto worker = [&](int t) {
    LeaseAgent& agent = *agents[t / kThreadsPerNode];
    std::mt19937 rng(t + 1);
    while (!stop) {
      const uint64_t gfid = kF + rng() % kFiles;
      const LeaseMode mode = rng() % 2 ? LeaseMode::kWrite : LeaseMode::kRead;
      uint64_t token = 0;
      waiting_since[t] = Clock::now().time_since_epoch().count();
      const int err = agent.Acquire(gfid, mode, &token);
      waiting_since[t] = 0;
      if (err != 0) {
        if (!stop) {
          std::lock_guard<std::mutex> l(mu);
          failures.push_back("Acquire failed: errno " + std::to_string(err));
        }
        return;
      }
      acquires++;
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
      if (rng() % 8 == 0) {
        agent.Release(gfid);
        releases++;
      }
    }
  };
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kNodes * kThreadsPerNode; t++) {
    threads.emplace_back([&, t] {
      worker(t);
      finished++;
    });
  }
  // Three seconds of use, then every thread's last Acquire must return.
  const Clock::time_point end = Clock::now() + milliseconds(3000);
  bool stuck = false;
  while (finished < kNodes * kThreadsPerNode && !stuck) {
    std::this_thread::sleep_for(milliseconds(50));
    if (Clock::now() >= end) stop = true;
    for (const auto& since : waiting_since) {
      const int64_t s = since.load();
      stuck |= s != 0 && Clock::now() - Clock::time_point(Clock::duration(s)) > kStuck;
    }
  }
  if (stuck) {
    std::string dump = "manager: " + manager_->Stats()["state"].dump(1);
    for (int n = 0; n < kNodes; n++) {
      dump += "\nN" + std::to_string(n) + ": " + stats[n]->ToJson()["state"].dump(1);
    }
    ADD_FAILURE() << "an Acquire waited more than " << kStuck.count() << " ms\n" << dump;
  }
  stop = true;
  for (auto& agent : agents) agent->Shutdown();  // ends an Acquire still waiting
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, std::vector<std::string>{});
  EXPECT_GT(acquires.load(), 100);
  EXPECT_GT(releases.load(), 10);
  EXPECT_GT(keeps.load(), 0);
  EXPECT_GT(handoffs.load(), 0);
  EXPECT_GT(ManagerStat("revokes"), 50u);
  // Every path of a kept cache was taken.
  auto sum = [&](const std::string& name) {
    uint64_t n = 0;
    for (const auto& s : stats) n += s->GetCounter(name)->Get();
    return n;
  };
  for (const char* name :
       {"lease.kept_on_revoke", "lease.kept_current", "lease.kept_refreshed", "lease.kept_dropped",
        "lease.upgrades_kept", "lease.revokes_of_nothing"}) {
    EXPECT_GT(sum(name), 0u) << name;
  }
}

}  // namespace
}  // namespace dfuse::lease
