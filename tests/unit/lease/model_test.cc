// Randomized model test of the lease state machine.
//
// Simulated clients acquire, release, ack revokes after random delays, go
// silent (hung: no heartbeats, messages pile up unread), disconnect and
// resume, while the manager fails over now and then (a new state machine
// with the next epoch, into which live clients reclaim what they hold).
// After every step the test checks:
//  * safety: the manager never has a WRITE holder beside another holder,
//    and among clients whose own lease term has not run out, no WRITE
//    belief coexists with any other belief on the same file;
//  * agreement: an active client believes exactly what the manager records;
//  * fencing: every new WRITE token exceeds every token issued before it;
//  * hand-offs: a grant hands over only what the file is now. Every WRITE
//    grant counts as a change of the file (its holder may write at any
//    time), and a WRITE holder's ack mostly hands over the file's version;
//  * kept caches: a client often names the version of its last grant of a
//    file when it asks again, and a grant that says what changed since
//    (since_known) lists the hand-off of every WRITE grant after that one,
//    in order, and nothing else.
// At the end all clients behave (heartbeat, ack at once) and every request
// still outstanding must be granted within a bounded number of steps.
//
// DFUSE_LEASE_SEED=n replays seed n alone; otherwise a random range of seeds
// runs and its first seed is printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lease/state_machine.h"

namespace dfuse::lease {

static void PrintTo(Mode mode, std::ostream* os) { *os << "NRW"[static_cast<int>(mode)]; }
static void PrintTo(Status status, std::ostream* os) {
  static const char* const kNames[] = {"kOk", "kNoSession", "kStale", "kRefused", "kInvalid"};
  *os << kNames[static_cast<int>(status)];
}

namespace {

using Actions = StateMachine::Actions;

constexpr uint64_t kTermMs = 200;
constexpr uint64_t kReclaimWindowMs = 50;

struct Held {
  Mode mode = Mode::kNone;
  uint64_t token = 0;
};

struct Request {
  uint64_t gfid;
  Mode mode;
  uint64_t known = 0;  // Acquire's known_version
};

struct Revoke {
  uint64_t gfid;
  Mode to;
  uint64_t ack_at;
};

struct Client {
  enum State { kActive, kHung, kAway };
  State state = kActive;
  bool has_session = false;
  uint64_t valid_until = 0;  // the client's own view: last renewal + term
  uint64_t wake_at = 0;      // kHung, kAway: when it comes back
  bool slow = false;         // acks revokes late
  bool lingers = false;  // takes revokes early (OpenSession)
  std::map<uint64_t, Held> held;
  std::map<uint64_t, uint64_t> cache_version;        // gfid -> version of its last grant
  std::map<uint64_t, Request> pending;               // request_id -> request
  std::map<uint64_t, Revoke> revokes;                // revoke_id -> revoke not yet acked
  std::vector<std::pair<uint64_t, uint64_t>> acked;  // (gfid, revoke_id) done
  std::deque<Action> inbox;                          // unread while hung

  void Reset() {
    has_session = false;
    held.clear();
    pending.clear();
    revokes.clear();
    inbox.clear();
  }
  bool Frozen(uint64_t gfid) const {
    for (const auto& [id, r] : revokes) {
      if (r.gfid == gfid) return true;
    }
    return false;
  }
  bool Waiting(uint64_t gfid) const {
    for (const auto& [id, r] : pending) {
      if (r.gfid == gfid) return true;
    }
    return false;
  }
  Mode HeldMode(uint64_t gfid) const {
    auto it = held.find(gfid);
    return it == held.end() ? Mode::kNone : it->second.mode;
  }
};

class Model {
 public:
  explicit Model(uint64_t seed) : rng_(seed) {
    clients_.resize(Uniform(2, 5));
    files_ = Uniform(1, 4);
    options_ = Options{.epoch = 1,
                       .term_ms = kTermMs,
                       .min_hold_ms = Pick({0, 0, 5, 20}),
                       .max_hold_ms = Pick({0, 0, 40})};
    for (Client& c : clients_) {
      c.slow = Chance(0.3);
      c.lingers = Chance(0.5);
    }
    sm_ = std::make_unique<StateMachine>(options_);
  }

  void Run() {
    for (int step = 0; step < 2000 && !::testing::Test::HasFailure(); step++) {
      RandomStep();
      Check();
    }
    if (::testing::Test::HasFailure()) return;
    Drain();
  }

  uint64_t grants() const { return grants_; }
  uint64_t handoffs() const { return handoffs_; }
  uint64_t since_checks() const { return since_checks_; }
  uint64_t expiries() const { return expiries_; }
  uint64_t failovers() const { return failovers_; }

 private:
  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  uint64_t Pick(std::initializer_list<uint64_t> values) {
    return *(values.begin() + Uniform(0, values.size() - 1));
  }
  ClientId Id(size_t index) const { return index + 1; }

  void RandomStep() {
    now_ += Uniform(0, 20);
    for (size_t i = 0; i < clients_.size(); i++) {
      Client& c = clients_[i];
      if (c.state != Client::kActive && now_ >= c.wake_at) Wake(i);
      if (c.state == Client::kActive && c.has_session && Chance(0.3)) Heartbeat(i);
    }
    const size_t i = Uniform(0, clients_.size() - 1);
    if (clients_[i].state == Client::kActive) ClientStep(i);
    for (size_t j = 0; j < clients_.size(); j++) AckDue(j, /*all=*/false);
    if (Chance(0.002)) Failover();
    if (now_ >= sm_->NextDeadline() || Chance(0.1)) Tick();
  }

  void ClientStep(size_t i) {
    Client& c = clients_[i];
    if (!c.has_session) {
      Actions out;
      EXPECT_FALSE(sm_->OpenSession(Id(i), now_, &out, clients_[i].lingers)) << "a forgotten session resumed";
      c.has_session = true;
      c.valid_until = now_ + kTermMs;
      Deliver(out);
      return;
    }
    const uint64_t gfid = Uniform(0, files_ - 1);
    const uint64_t r = Uniform(0, 99);
    if (r < 45) {
      Acquire(i, gfid, Chance(0.5) ? Mode::kRead : Mode::kWrite);
    } else if (r < 60) {
      if (c.HeldMode(gfid) != Mode::kNone && !c.Frozen(gfid)) {
        c.held.erase(gfid);
        Actions out;
        EXPECT_EQ(sm_->Release(Id(i), gfid, now_, &out), Status::kOk);
        Deliver(out);
      }
    } else if (r < 64) {
      StaleAck(i);
    } else if (r < 67) {
      c.state = Client::kHung;
      c.wake_at = now_ + Uniform(0, 2 * kTermMs);
    } else if (r < 70) {
      Actions out;
      sm_->ClientGone(Id(i), now_, &out);
      c.pending.clear();  // the manager dropped them with the stream
      std::erase_if(c.revokes, [this](const auto&) { return Chance(0.5); });  // still in flight
      c.state = Client::kAway;
      c.wake_at = now_ + Uniform(0, 2 * kTermMs);
      Deliver(out);
    }
  }

  void Acquire(size_t i, uint64_t gfid, Mode mode) {
    Client& c = clients_[i];
    if (c.Waiting(gfid)) return;  // one request per file, as the lease agent does
    const Mode held = c.HeldMode(gfid);
    const bool frozen = c.Frozen(gfid);
    if (frozen && mode > held) return;  // no upgrade in the middle of a revoke
    if (held == Mode::kRead && mode == Mode::kWrite) c.held.erase(gfid);  // Algorithm 1
    const uint64_t id = ++request_id_;
    auto kept = c.cache_version.find(gfid);
    const uint64_t known = kept != c.cache_version.end() && Chance(0.7) ? kept->second : 0;
    c.pending[id] = Request{gfid, mode, known};
    Actions out;
    EXPECT_EQ(sm_->Acquire(Id(i), id, gfid, mode, ByteRange{}, now_, &out, known), Status::kOk);
    const bool immediate = held >= mode && !frozen;
    if (immediate) {
      EXPECT_EQ(out.size(), 1u);
    }
    const bool granted = std::any_of(out.begin(), out.end(), [&](const Action& a) {
      return a.kind == Action::kGrant && a.client == Id(i) && a.request_id == id;
    });
    if (immediate || frozen) {
      EXPECT_EQ(granted, immediate) << "request " << id;
    }
    Deliver(out);
  }

  // Re-sends an ack the manager already took: it must be ignored.
  void StaleAck(size_t i) {
    Client& c = clients_[i];
    if (c.acked.empty()) return;
    const auto [gfid, revoke_id] = c.acked[Uniform(0, c.acked.size() - 1)];
    Actions out;
    EXPECT_EQ(sm_->RevokeAck(Id(i), gfid, revoke_id, Mode::kNone, now_, &out), Status::kStale);
    EXPECT_TRUE(out.empty());
  }

  void Heartbeat(size_t i) {
    EXPECT_EQ(sm_->Heartbeat(Id(i), now_), Status::kOk) << "client " << Id(i);
    clients_[i].valid_until = now_ + kTermMs;
  }

  void AckDue(size_t i, bool all) {
    Client& c = clients_[i];
    if (c.state != Client::kActive) return;
    std::vector<uint64_t> due;
    for (const auto& [id, r] : c.revokes) {
      if (all || r.ack_at <= now_) due.push_back(id);
    }
    for (uint64_t id : due) {
      auto it = c.revokes.find(id);
      if (it == c.revokes.end()) continue;  // a reset while delivering
      const Revoke r = it->second;
      c.revokes.erase(it);
      // A WRITE holder's write-back tells what it left the file as, or
      // (nothing to write back) nothing.
      std::string handoff;
      if (c.HeldMode(r.gfid) == Mode::kWrite && Chance(0.8)) handoff = Version(r.gfid);
      const uint64_t token = c.HeldMode(r.gfid) == Mode::kWrite ? c.held[r.gfid].token : 0;
      const Mode acked = std::min(c.HeldMode(r.gfid), r.to);
      if (acked == Mode::kNone) {
        c.held.erase(r.gfid);
      } else {
        c.held[r.gfid] = Held{acked, 0};
      }
      c.acked.emplace_back(r.gfid, id);
      if (token != 0 && !handoff.empty()) handed_over_[token] = handoff;
      Actions out;
      EXPECT_EQ(sm_->RevokeAck(Id(i), r.gfid, id, acked, now_, &out, handoff), Status::kOk);
      Deliver(out);
    }
  }

  std::string Version(uint64_t gfid) { return "v" + std::to_string(versions_[gfid]); }

  void Wake(size_t i) {
    Client& c = clients_[i];
    if (c.state == Client::kHung) {
      c.state = Client::kActive;
      while (!c.inbox.empty() && c.state == Client::kActive) {
        const Action a = c.inbox.front();
        c.inbox.pop_front();
        Process(i, a);
      }
      return;
    }
    c.state = Client::kActive;
    if (!c.has_session) return;  // opens a fresh session on its next step
    Actions out;
    const bool resumed = sm_->OpenSession(Id(i), now_, &out, clients_[i].lingers);
    if (!resumed) c.Reset();  // expired while away: everything is gone
    c.has_session = true;
    c.valid_until = now_ + kTermMs;
    Deliver(out);
  }

  void Tick() {
    Actions out;
    sm_->Tick(now_, &out);
    Deliver(out);
  }

  // A new manager with the next epoch. Active clients finish the revokes
  // they were flushing and reclaim what they still validly hold; hung and
  // away clients lose everything.
  void Failover() {
    failovers_++;
    options_.epoch++;
    sm_ = std::make_unique<StateMachine>(options_);
    sm_->BeginReclaim(now_, kReclaimWindowMs);
    for (size_t i = 0; i < clients_.size(); i++) {
      Client& c = clients_[i];
      c.acked.clear();
      if (c.state != Client::kActive || !c.has_session || now_ >= c.valid_until) {
        c.Reset();
        continue;
      }
      c.pending.clear();
      for (const auto& [id, r] : c.revokes) {
        const Mode to = std::min(c.HeldMode(r.gfid), r.to);
        if (to == Mode::kNone) {
          c.held.erase(r.gfid);
        } else {
          c.held[r.gfid] = Held{to, 0};
        }
      }
      c.revokes.clear();
      Actions out;
      EXPECT_FALSE(sm_->OpenSession(Id(i), now_, &out, clients_[i].lingers));
      EXPECT_TRUE(out.empty());
      c.valid_until = now_ + kTermMs;
      for (const auto& [gfid, h] : c.held) {
        EXPECT_EQ(sm_->Reclaim(Id(i), gfid, h.mode, h.token, now_), Status::kOk)
            << "client " << Id(i) << " file " << gfid;
      }
    }
  }

  // Hands the manager's actions to their clients; active ones read at once.
  void Deliver(const Actions& actions) {
    for (const Action& a : actions) {
      if (a.kind == Action::kGrant) {
        const bool fresh = CheckToken(a);
        CheckSince(a);
        CheckHandoff(a);
        if (fresh) writes_[a.gfid].push_back(a.token);
        writes_at_[{a.gfid, a.version}] = writes_[a.gfid].size();
      }
      Client& c = clients_[a.client - 1];
      if (c.state == Client::kAway) {
        EXPECT_EQ(a.kind, Action::kSessionExpired) << "sent to a disconnected client";
        continue;  // lost with the stream
      }
      c.inbox.push_back(a);
    }
    for (size_t i = 0; i < clients_.size(); i++) {
      Client& c = clients_[i];
      while (c.state == Client::kActive && !c.inbox.empty()) {
        const Action a = c.inbox.front();
        c.inbox.pop_front();
        Process(i, a);
      }
    }
  }

  void Process(size_t i, const Action& a) {
    Client& c = clients_[i];
    switch (a.kind) {
      case Action::kGrant: {
        auto it = c.pending.find(a.request_id);
        ASSERT_NE(it, c.pending.end()) << "grant for no request, client " << Id(i);
        EXPECT_EQ(it->second.gfid, a.gfid);
        EXPECT_GE(a.mode, it->second.mode);
        c.pending.erase(it);
        c.held[a.gfid] = Held{a.mode, a.token};
        c.cache_version[a.gfid] = a.version;
        grants_++;
        break;
      }
      case Action::kRevoke: {
        const uint64_t delay = Chance(0.3) ? 0 : Uniform(0, c.slow ? 150 : 40);
        c.revokes.try_emplace(a.revoke_id, Revoke{a.gfid, a.mode, now_ + delay});
        break;
      }
      case Action::kSessionExpired:
        c.Reset();
        expiries_++;
        break;
    }
  }

  // Returns whether the grant is a new WRITE lease (not a repeat).
  bool CheckToken(const Action& a) {
    if (a.mode != Mode::kWrite) {
      EXPECT_EQ(a.token, 0u);
      return false;
    }
    auto [it, fresh] = token_owner_.try_emplace(a.token, a.client, a.gfid);
    if (fresh) {
      EXPECT_GT(a.token, max_token_) << "WRITE tokens must increase";
      max_token_ = a.token;
    } else {
      // An idempotent re-grant repeats the holder's own token.
      EXPECT_EQ(it->second, std::make_pair(a.client, a.gfid)) << "token reused";
    }
    return fresh;
  }

  void CheckSince(const Action& a) {
    const Client& c = clients_[a.client - 1];
    auto req = c.pending.find(a.request_id);
    if (req == c.pending.end() || req->second.known == 0) {
      EXPECT_FALSE(a.since_known) << "nothing was asked";
      return;
    }
    if (!a.since_known) {
      EXPECT_TRUE(a.since.empty());
      return;
    }
    auto at = writes_at_.find({a.gfid, req->second.known});
    ASSERT_NE(at, writes_at_.end()) << "a version no grant had";
    // Every new WRITE lease granted since, each handed over by its ack.
    std::vector<std::string> want;
    const std::vector<uint64_t>& writes = writes_[a.gfid];
    for (size_t n = at->second; n < writes.size(); n++) {
      auto acked = handed_over_.find(writes[n]);
      want.push_back(acked == handed_over_.end() ? "(none)" : acked->second);
    }
    EXPECT_EQ(a.since, want) << "client " << a.client << " file " << a.gfid;
    since_checks_++;
  }

  void CheckHandoff(const Action& a) {
    if (!a.handoff.empty()) {
      EXPECT_EQ(a.handoff, Version(a.gfid)) << "stale hand-off to client " << a.client;
      handoffs_++;
    }
    if (a.mode == Mode::kWrite) versions_[a.gfid]++;
  }

  void Check() {
    for (uint64_t gfid = 0; gfid < files_; gfid++) {
      const std::vector<ClientId> holders = sm_->holders(gfid);
      if (sm_->mode(gfid) == Mode::kWrite) {
        EXPECT_EQ(holders.size(), 1u) << "WRITE shared, file " << gfid;
      }
      int writers = 0, readers = 0;
      for (size_t i = 0; i < clients_.size(); i++) {
        const Client& c = clients_[i];
        const Mode believed = c.has_session ? c.HeldMode(gfid) : Mode::kNone;
        if (c.state == Client::kActive && c.has_session) {
          EXPECT_EQ(believed, sm_->HeldMode(Id(i), gfid)) << "client " << Id(i) << " file " << gfid;
        }
        if (now_ < c.valid_until) {
          writers += believed == Mode::kWrite;
          readers += believed == Mode::kRead;
        }
      }
      EXPECT_TRUE(writers == 0 || (writers == 1 && readers == 0))
          << writers << " writers, " << readers << " readers believe in file " << gfid;
    }
  }

  // Everyone behaves; every outstanding request must then be granted.
  void Drain() {
    for (size_t i = 0; i < clients_.size(); i++) clients_[i].wake_at = now_;
    for (int step = 0; step < 200; step++) {
      now_ += 10;
      bool idle = true;
      for (size_t i = 0; i < clients_.size(); i++) {
        Client& c = clients_[i];
        if (c.state != Client::kActive) Wake(i);
        if (!c.has_session) ClientStep(i);  // opens a session
        Heartbeat(i);
        AckDue(i, /*all=*/true);
        idle = idle && c.pending.empty() && c.revokes.empty();
      }
      Tick();
      Check();
      if (::testing::Test::HasFailure()) return;
      if (idle) break;
    }
    for (size_t i = 0; i < clients_.size(); i++) {
      EXPECT_TRUE(clients_[i].pending.empty()) << "client " << Id(i) << " starved";
    }
    for (uint64_t gfid = 0; gfid < files_; gfid++) EXPECT_EQ(sm_->queue_length(gfid), 0u);
  }

  std::mt19937_64 rng_;
  std::vector<Client> clients_;
  uint64_t files_;
  Options options_;
  std::unique_ptr<StateMachine> sm_;
  uint64_t now_ = 1000;
  uint64_t request_id_ = 0;
  uint64_t max_token_ = 0;
  std::map<uint64_t, std::pair<ClientId, uint64_t>> token_owner_;  // token -> (client, gfid)
  std::map<uint64_t, uint64_t> versions_;  // gfid -> WRITE grants so far: its version
  std::map<uint64_t, std::vector<uint64_t>> writes_;  // gfid -> new WRITE tokens, in order
  // (gfid, Grant.version) -> how many of writes_[gfid] came before that grant.
  std::map<std::pair<uint64_t, uint64_t>, size_t> writes_at_;
  std::map<uint64_t, std::string> handed_over_;  // token -> its holder's ack's hand-off
  uint64_t since_checks_ = 0;
  uint64_t grants_ = 0, expiries_ = 0, failovers_ = 0, handoffs_ = 0;
};

TEST(LeaseModelTest, RandomHistoriesStaySafeAndEveryLiveRequestIsGranted) {
  uint64_t first = std::random_device{}();
  uint64_t count = 300;
  if (const char* env = std::getenv("DFUSE_LEASE_SEED")) {
    first = std::strtoull(env, nullptr, 10);
    count = 1;
  }
  std::printf("lease model: seeds %llu..%llu (DFUSE_LEASE_SEED=n replays one)\n",
              static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + count - 1));
  uint64_t grants = 0, expiries = 0, failovers = 0, handoffs = 0, since = 0;
  for (uint64_t seed = first; seed < first + count; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Model model(seed);
    model.Run();
    if (::testing::Test::HasFailure()) {
      std::printf("lease model: FAILED at seed %llu\n", static_cast<unsigned long long>(seed));
      return;
    }
    grants += model.grants();
    expiries += model.expiries();
    failovers += model.failovers();
    handoffs += model.handoffs();
    since += model.since_checks();
  }
  std::printf(
      "lease model: %llu grants, %llu expiries, %llu failovers, %llu hand-offs, %llu told what "
      "changed\n",
      static_cast<unsigned long long>(grants), static_cast<unsigned long long>(expiries),
      static_cast<unsigned long long>(failovers), static_cast<unsigned long long>(handoffs),
      static_cast<unsigned long long>(since));
  if (count > 1) {  // the histories must exercise what they claim to
    EXPECT_GT(expiries, 0u);
    EXPECT_GT(failovers, 0u);
    EXPECT_GT(handoffs, 0u);
    EXPECT_GT(since, 0u);
  }
}

}  // namespace
}  // namespace dfuse::lease
