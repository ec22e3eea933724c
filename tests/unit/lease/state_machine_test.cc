// Targeted tests of the lease state machine: one rule per test, with the
// exact actions each call must produce.
#include "lease/state_machine.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dfuse::lease {

static void PrintTo(Mode mode, std::ostream* os) { *os << "NRW"[static_cast<int>(mode)]; }

namespace {

using Actions = StateMachine::Actions;

constexpr uint64_t kF = 10;  // the file most tests contend on
constexpr uint64_t kG = 11;

char Letter(Mode mode) { return "NRW"[static_cast<int>(mode)]; }

// "grant c2 f10 W r7", "revoke c1 f10 ->R", "expired c3": exact and readable.
std::string Describe(const Action& a) {
  switch (a.kind) {
    case Action::kGrant:
      return "grant c" + std::to_string(a.client) + " f" + std::to_string(a.gfid) + " " +
             Letter(a.mode) + " r" + std::to_string(a.request_id);
    case Action::kRevoke:
      return "revoke c" + std::to_string(a.client) + " f" + std::to_string(a.gfid) + " ->" +
             Letter(a.mode);
    case Action::kSessionExpired:
      return "expired c" + std::to_string(a.client);
  }
  return "?";
}

std::vector<std::string> Describe(const Actions& actions) {
  std::vector<std::string> out;
  for (const Action& a : actions) out.push_back(Describe(a));
  return out;
}

using Strings = std::vector<std::string>;

uint64_t Token(uint64_t epoch, uint64_t counter) { return (epoch << 40) | counter; }

class LeaseTest : public ::testing::Test {
 protected:
  LeaseTest() { Restart(Options{.epoch = 1, .term_ms = 1000, .min_hold_ms = 0}); }

  void Restart(const Options& options) { sm_ = std::make_unique<StateMachine>(options); }

  void Open(std::initializer_list<ClientId> clients) {
    for (ClientId c : clients) {
      Actions out;
      EXPECT_FALSE(sm_->OpenSession(c, now_, &out));
      EXPECT_TRUE(out.empty());
    }
  }

  // Acquire with a fresh request id; returns what it produced.
  // `known`: the version of a cache the client kept (Acquire.known_version).
  Strings Acquire(ClientId c, uint64_t gfid, Mode mode, uint64_t known = 0) {
    last_.clear();
    EXPECT_EQ(sm_->Acquire(c, ++request_id_, gfid, mode, ByteRange{}, now_, &last_, known),
              Status::kOk);
    Remember();
    return Describe(last_);
  }

  // The grant of the last call to `c`.
  Action GrantTo(ClientId c) {
    for (const Action& a : last_) {
      if (a.kind == Action::kGrant && a.client == c) return a;
    }
    ADD_FAILURE() << "no grant to c" << c;
    return {};
  }

  // Acks the most recent revoke sent to `c` for `gfid`.
  Strings Ack(ClientId c, uint64_t gfid, Mode acked, std::string handoff = {}) {
    const uint64_t id = revoke_ids_[{c, gfid}];
    last_.clear();
    EXPECT_EQ(sm_->RevokeAck(c, gfid, id, acked, now_, &last_, std::move(handoff)), Status::kOk);
    Remember();
    return Describe(last_);
  }

  Strings Release(ClientId c, uint64_t gfid) {
    last_.clear();
    EXPECT_EQ(sm_->Release(c, gfid, now_, &last_), Status::kOk);
    Remember();
    return Describe(last_);
  }

  Strings Tick() {
    last_.clear();
    sm_->Tick(now_, &last_);
    Remember();
    return Describe(last_);
  }

  Strings Gone(ClientId c) {
    last_.clear();
    sm_->ClientGone(c, now_, &last_);
    Remember();
    return Describe(last_);
  }

  // The hand-off of each grant of the last call, in order.
  Strings Handoffs() {
    Strings out;
    for (const Action& a : last_) {
      if (a.kind == Action::kGrant) out.push_back(a.handoff);
    }
    return out;
  }

  // The token of the last grant produced, which must be the only action.
  uint64_t GrantToken() {
    EXPECT_EQ(last_.size(), 1u);
    return last_.empty() ? 0 : last_[0].token;
  }

  // Records the revoke ids of the last call so that Ack can echo them.
  void Remember() {
    for (const Action& a : last_) {
      if (a.kind == Action::kRevoke) revoke_ids_[{a.client, a.gfid}] = a.revoke_id;
    }
  }

  std::unique_ptr<StateMachine> sm_;
  uint64_t now_ = 1000;
  uint64_t request_id_ = 0;
  Actions last_;
  std::map<std::pair<ClientId, uint64_t>, uint64_t> revoke_ids_;
};

#define EXPECT_ACTIONS(call, ...) EXPECT_EQ(call, (Strings{__VA_ARGS__}))

TEST_F(LeaseTest, GrantsAFreeFileAtOnce) {
  Open({1});
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "grant c1 f10 W r1");
  EXPECT_EQ(last_[0].token, Token(1, 1));
  EXPECT_EQ(last_[0].range.start, 0u);
  EXPECT_EQ(last_[0].range.end, UINT64_MAX);
  EXPECT_EQ(sm_->mode(kF), Mode::kWrite);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{1}));
  EXPECT_EQ(sm_->lease_count(), 1u);
  EXPECT_EQ(sm_->counters().grants, 1u);
}

TEST_F(LeaseTest, ReadersShare) {
  Open({1, 2, 3});
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead), "grant c1 f10 R r1");
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead), "grant c2 f10 R r2");
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kRead), "grant c3 f10 R r3");
  EXPECT_EQ(last_[0].token, 0u);
  EXPECT_EQ(sm_->mode(kF), Mode::kRead);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{1, 2, 3}));
  EXPECT_EQ(sm_->counters().revokes, 0u);
}

TEST_F(LeaseTest, WriterExcludesEveryoneUntilItAcks) {
  Open({1, 2});
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "grant c1 f10 W r1");
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_EQ(sm_->queue_length(kF), 1u);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{1}));
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2");
  EXPECT_EQ(last_[0].token, Token(1, 2));
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{2}));
  EXPECT_EQ(sm_->queue_length(kF), 0u);
}

TEST_F(LeaseTest, WriterRevokesAllReadersInParallelAndWaitsForEveryAck) {
  Open({1, 2, 3, 4});
  for (ClientId c : {1, 2, 3}) Acquire(c, kF, Mode::kRead);
  EXPECT_ACTIONS(Acquire(4, kF, Mode::kWrite), "revoke c1 f10 ->N", "revoke c2 f10 ->N",
                 "revoke c3 f10 ->N");
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone));
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone));
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{3}));
  EXPECT_ACTIONS(Ack(3, kF, Mode::kNone), "grant c4 f10 W r4");
  EXPECT_EQ(sm_->counters().revokes, 3u);
}

TEST_F(LeaseTest, EachHolderIsRevokedOnceHoweverManyWait) {
  Open({1, 2, 3, 4});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kWrite));
  EXPECT_ACTIONS(Acquire(4, kF, Mode::kRead));
  EXPECT_EQ(sm_->queue_length(kF), 3u);
  EXPECT_EQ(sm_->counters().revokes, 1u);
}

TEST_F(LeaseTest, WriterIsDowngradedToReadForAReader) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead), "revoke c1 f10 ->R");
  EXPECT_ACTIONS(Ack(1, kF, Mode::kRead), "grant c2 f10 R r2");
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kRead);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{1, 2}));
  EXPECT_EQ(sm_->mode(kF), Mode::kRead);
}

TEST_F(LeaseTest, DowngradeMayBeAckedWithNone) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead), "revoke c1 f10 ->R");
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 R r2");
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{2}));
}

TEST_F(LeaseTest, AckStrongerThanAskedIsInvalid) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  const uint64_t id = last_[0].revoke_id;
  Actions out;
  EXPECT_EQ(sm_->RevokeAck(1, kF, id, Mode::kRead, now_, &out), Status::kInvalid);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kWrite);
}

TEST_F(LeaseTest, StaleAcksAreIgnored) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  const uint64_t id = last_[0].revoke_id;
  Actions out;
  EXPECT_EQ(sm_->RevokeAck(1, kF, id + 1, Mode::kNone, now_, &out), Status::kStale);
  EXPECT_EQ(sm_->RevokeAck(2, kF, id, Mode::kNone, now_, &out), Status::kStale);
  EXPECT_EQ(sm_->RevokeAck(1, kG, id, Mode::kNone, now_, &out), Status::kStale);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(sm_->RevokeAck(1, kF, id, Mode::kNone, now_, &out), Status::kOk);
  EXPECT_EQ(Describe(out), (Strings{"grant c2 f10 W r2"}));
  out.clear();
  EXPECT_EQ(sm_->RevokeAck(1, kF, id, Mode::kNone, now_, &out), Status::kStale);
  EXPECT_TRUE(out.empty());
}

TEST_F(LeaseTest, WaitersAreServedInOrderAndConsecutiveReadersTogether) {
  Open({1, 2, 3, 4, 5, 6});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kRead));
  EXPECT_ACTIONS(Acquire(4, kF, Mode::kRead));
  EXPECT_ACTIONS(Acquire(5, kF, Mode::kWrite));
  EXPECT_ACTIONS(Acquire(6, kF, Mode::kRead));
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2", "revoke c2 f10 ->R");
  EXPECT_ACTIONS(Ack(2, kF, Mode::kRead), "grant c3 f10 R r3", "grant c4 f10 R r4",
                 "revoke c2 f10 ->N", "revoke c3 f10 ->N", "revoke c4 f10 ->N");
  EXPECT_ACTIONS(Ack(4, kF, Mode::kNone));
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone));
  EXPECT_ACTIONS(Ack(3, kF, Mode::kNone), "grant c5 f10 W r5", "revoke c5 f10 ->R");
  EXPECT_ACTIONS(Ack(5, kF, Mode::kRead), "grant c6 f10 R r6");
  EXPECT_EQ(sm_->queue_length(kF), 0u);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{5, 6}));
}

TEST_F(LeaseTest, ReadersQueueBehindAWaitingWriter) {
  Open({1, 2, 3, 4});
  Acquire(1, kF, Mode::kRead);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  // Compatible with the READ holder, but a writer is waiting: no grant.
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kRead));
  EXPECT_ACTIONS(Acquire(4, kF, Mode::kRead));
  EXPECT_EQ(sm_->queue_length(kF), 3u);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2", "revoke c2 f10 ->R");
  EXPECT_ACTIONS(Ack(2, kF, Mode::kRead), "grant c3 f10 R r3", "grant c4 f10 R r4");
}

TEST_F(LeaseTest, HolderReacquiringWhatItHoldsIsGrantedAtOnce) {
  Open({1, 2});
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "grant c1 f10 W r1");
  const uint64_t token = last_[0].token;
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "grant c1 f10 W r2");
  EXPECT_EQ(last_[0].token, token);
  // A WRITE holder asking for READ is told it holds WRITE.
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead), "grant c1 f10 W r3");
  EXPECT_EQ(last_[0].token, token);
  EXPECT_ACTIONS(Acquire(2, kG, Mode::kRead), "grant c2 f11 R r4");
  EXPECT_ACTIONS(Acquire(2, kG, Mode::kRead), "grant c2 f11 R r5");
  EXPECT_EQ(sm_->lease_count(), 2u);
}

TEST_F(LeaseTest, HolderWithARevokeOutstandingQueues) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  const uint64_t first = GrantToken();
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite));
  EXPECT_EQ(sm_->queue_length(kF), 2u);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2", "revoke c2 f10 ->N");
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c1 f10 W r3");
  EXPECT_GT(last_[0].token, first);
}

TEST_F(LeaseTest, UpgradeGivesUpTheReadLeaseAndRevokesTheOtherReaders) {
  Open({1, 2});
  Acquire(1, kF, Mode::kRead);
  Acquire(2, kF, Mode::kRead);
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "revoke c2 f10 ->N");
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{2}));
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c1 f10 W r3");
  EXPECT_EQ(last_[0].token, Token(1, 1));
  EXPECT_TRUE(last_[0].unchanged);  // nobody wrote: c1's READ cache is current
}

TEST_F(LeaseTest, SoleReaderUpgradesAtOnce) {
  Open({1});
  Acquire(1, kF, Mode::kRead);
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "grant c1 f10 W r2");
  EXPECT_TRUE(last_[0].unchanged);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{1}));
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kWrite);
  Release(1, kF);
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite), "grant c1 f10 W r3");
  EXPECT_FALSE(last_[0].unchanged);  // not an upgrade: says nothing of a cache
}

TEST_F(LeaseTest, UpgradeQueuesBehindEarlierWaitersAndSupersedesItsRevoke) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kRead);
  Acquire(2, kF, Mode::kRead);
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kWrite), "revoke c1 f10 ->N", "revoke c2 f10 ->N");
  const uint64_t old_revoke = revoke_ids_[{1, kF}];
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite));  // gives up READ, queues behind c3
  EXPECT_EQ(sm_->queue_length(kF), 2u);
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c3 f10 W r3", "revoke c3 f10 ->N");
  EXPECT_FALSE(last_[0].unchanged);
  Actions out;
  EXPECT_EQ(sm_->RevokeAck(1, kF, old_revoke, Mode::kNone, now_, &out), Status::kStale);
  EXPECT_ACTIONS(Ack(3, kF, Mode::kNone), "grant c1 f10 W r4");
  EXPECT_FALSE(last_[0].unchanged);  // c3 wrote between c1's READ and WRITE leases
}

TEST_F(LeaseTest, MinimumHoldTimeDefersTheRevokeUntilTick) {
  Restart(Options{.epoch = 1, .term_ms = 1000, .min_hold_ms = 10});
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  now_ += 3;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite));
  EXPECT_EQ(sm_->NextDeadline(), 1010u);
  now_ = 1009;
  EXPECT_ACTIONS(Tick());
  now_ = 1010;
  EXPECT_ACTIONS(Tick(), "revoke c1 f10 ->N");
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2");
  // c2 got its lease at 1010; a late waiter is held off until 1020.
  EXPECT_EQ(sm_->NextDeadline(), 1000u + 1000u);  // only c1's session expiry left
  now_ = 1015;
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead));
  EXPECT_EQ(sm_->NextDeadline(), 1020u);
  now_ = 1020;
  EXPECT_ACTIONS(Tick(), "revoke c2 f10 ->R");
}

// The manager's state dump: each file someone waits on, longest wait
// first, with its holders (and their unanswered revokes) and its queue.
TEST_F(LeaseTest, WaitingListsWhoHoldsAndWhoWaitsLongestFirst) {
  Restart(Options{.epoch = 1, .term_ms = 1000, .min_hold_ms = 10});
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(1, kG, Mode::kRead);
  EXPECT_TRUE(sm_->Waiting(now_, 10).empty());
  now_ += 4;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite));  // held off until 1010
  now_ += 6;
  EXPECT_ACTIONS(Tick(), "revoke c1 f10 ->N");
  now_ += 1;
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kRead));
  now_ += 1;
  // c1 has held kG past its minimum hold: revoked at once.
  EXPECT_ACTIONS(Acquire(3, kG, Mode::kWrite), "revoke c1 f11 ->N");
  now_ += 1;
  const std::vector<WaitingFile> waiting = sm_->Waiting(now_, 10);
  ASSERT_EQ(waiting.size(), 2u);
  const WaitingFile& f = waiting[0];  // waited on for 9 ms, kG for 1
  EXPECT_EQ(f.gfid, kF);
  ASSERT_EQ(f.holders.size(), 1u);
  EXPECT_EQ(f.holders[0].client, 1u);
  EXPECT_EQ(f.holders[0].mode, Mode::kWrite);
  EXPECT_EQ(f.holders[0].held_ms, 13u);
  EXPECT_EQ(f.holders[0].revoke_to, Mode::kNone);
  EXPECT_EQ(f.holders[0].revoke_id, (revoke_ids_[{1, kF}]));
  EXPECT_EQ(f.holders[0].revoke_age_ms, 3u);
  ASSERT_EQ(f.waiters.size(), 2u);
  EXPECT_EQ(f.waiters[0].client, 2u);
  EXPECT_EQ(f.waiters[0].mode, Mode::kWrite);
  EXPECT_EQ(f.waiters[0].waited_ms, 9u);
  EXPECT_EQ(f.waiters[1].client, 3u);
  EXPECT_EQ(f.waiters[1].waited_ms, 2u);
  EXPECT_EQ(f.revoke_in_ms, -1);  // sent already
  EXPECT_EQ(waiting[1].gfid, kG);
  EXPECT_EQ(waiting[1].holders[0].revoke_to, Mode::kNone);
  EXPECT_EQ(sm_->Waiting(now_, 1).size(), 1u);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r3");
  // c3 still waits on kF (for 2 ms, kG for 1), behind c2's fresh hold.
  ASSERT_EQ(sm_->Waiting(now_, 10).size(), 2u);
  EXPECT_EQ(sm_->Waiting(now_, 10)[0].gfid, kF);
  EXPECT_EQ(sm_->Waiting(now_, 10)[0].holders[0].client, 2u);
  EXPECT_EQ(sm_->Waiting(now_, 10)[0].revoke_in_ms, 10);
}

TEST_F(LeaseTest, HolderPastItsMinimumHoldIsRevokedAtOnce) {
  Restart(Options{.epoch = 1, .term_ms = 1000, .min_hold_ms = 10});
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  now_ += 10;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
}

// The hold adapts to the file's handoff cost: a holder keeps its lease at
// least as long as the last revokes of the file took, within the bounds.
TEST_F(LeaseTest, HoldAdaptsToWhatTheFilesRevokesCost) {
  Restart(Options{.epoch = 1, .term_ms = 100000, .min_hold_ms = 2, .max_hold_ms = 50});
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  now_ += 2;
  // No revoke of the file seen yet: the minimum hold.
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  now_ += 30;  // the handoff takes 30 ms
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2");
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite));
  EXPECT_EQ(sm_->NextDeadline(), now_ + 30);
  now_ += 29;
  EXPECT_ACTIONS(Tick());
  now_ += 1;
  EXPECT_ACTIONS(Tick(), "revoke c2 f10 ->N");
  // A much slower handoff counts as the longest hold (one stalled holder must
  // not pin the file's hold) and moves the average a quarter of the way:
  // (3 x 30 + 50) / 4.
  now_ += 230;
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c1 f10 W r3");
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite));
  EXPECT_EQ(sm_->NextDeadline(), now_ + 35);
  now_ += 35;
  EXPECT_ACTIONS(Tick(), "revoke c1 f10 ->N");
  // Slow handoffs again and again: the hold approaches max_hold_ms, never above.
  for (int i = 0; i < 12; i++) {
    const ClientId from = i % 2 == 0 ? 1 : 2, to = 3 - from;
    now_ += 400;
    EXPECT_EQ(Ack(from, kF, Mode::kNone).size(), 1u);
    EXPECT_EQ(Acquire(from, kF, Mode::kWrite).size(), 0u);
    EXPECT_LE(sm_->NextDeadline(), now_ + 50);
    now_ = sm_->NextDeadline();
    EXPECT_ACTIONS(Tick(), "revoke c" + std::to_string(to) + " f10 ->N");
  }
  now_ += 400;
  EXPECT_EQ(Ack(1, kF, Mode::kNone).size(), 1u);
  EXPECT_EQ(Acquire(1, kF, Mode::kWrite).size(), 0u);
  EXPECT_EQ(sm_->NextDeadline(), now_ + 50);
  now_ = sm_->NextDeadline();
  EXPECT_ACTIONS(Tick(), "revoke c2 f10 ->N");
  // Fast handoffs bring it back down, never below min_hold_ms.
  for (int i = 0; i < 20; i++) {
    const ClientId from = i % 2 == 0 ? 2 : 1, to = 3 - from;
    EXPECT_EQ(Ack(from, kF, Mode::kNone).size(), 1u);
    EXPECT_EQ(Acquire(from, kF, Mode::kWrite).size(), 0u);
    now_ = sm_->NextDeadline();
    EXPECT_ACTIONS(Tick(), "revoke c" + std::to_string(to) + " f10 ->N");
  }
  EXPECT_EQ(Ack(2, kF, Mode::kNone).size(), 1u);
  EXPECT_EQ(Acquire(2, kF, Mode::kWrite).size(), 0u);
  EXPECT_EQ(sm_->NextDeadline(), now_ + 2) << "after instant acks the hold is the minimum";
}

TEST_F(LeaseTest, WithoutAMaximumTheHoldIsFixed) {
  Restart(Options{.epoch = 1, .term_ms = 100000, .min_hold_ms = 2});
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  now_ += 2;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  now_ += 30;
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2");
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite));
  EXPECT_EQ(sm_->NextDeadline(), now_ + 2);
}

// A lingering session gets its revoke as soon as someone waits, with what
// is left of the hold; a non-lingering one only once the hold is over.
TEST_F(LeaseTest, ALingeringHolderIsRevokedAtOnceWithTheRestOfItsHold) {
  Restart(Options{.epoch = 1, .term_ms = 100000, .min_hold_ms = 10});
  Actions out;
  EXPECT_FALSE(sm_->OpenSession(1, now_, &out, /*lingers=*/true));
  Open({2});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kG, Mode::kWrite);
  now_ += 3;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_EQ(last_[0].linger_ms, 7u);
  EXPECT_ACTIONS(Acquire(1, kG, Mode::kWrite));  // c2 waits its hold out
  EXPECT_EQ(sm_->NextDeadline(), 1010u);
  // Resumed before the ack: the revoke again, with the linger left.
  now_ += 2;
  EXPECT_ACTIONS(Gone(1));
  out.clear();
  EXPECT_TRUE(sm_->OpenSession(1, now_, &out, /*lingers=*/true));
  ASSERT_EQ(Describe(out), (Strings{"revoke c1 f10 ->N"}));
  EXPECT_EQ(out[0].linger_ms, 5u);
  EXPECT_ACTIONS(Acquire(1, kG, Mode::kWrite));  // lost with the stream
  // Past the hold, a lingering holder is revoked with nothing to linger.
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r3");
  now_ = 1010;
  EXPECT_ACTIONS(Tick(), "revoke c2 f11 ->N");
  EXPECT_ACTIONS(Ack(2, kG, Mode::kNone), "grant c1 f11 W r5");
  now_ += 10;
  EXPECT_ACTIONS(Acquire(2, kG, Mode::kWrite), "revoke c1 f11 ->N");
  EXPECT_EQ(last_[0].linger_ms, 0u);
}

// How long a lingering holder kept using its lease says nothing about what
// the handoff costs: its acks leave the file's hold where it was.
TEST_F(LeaseTest, LingeredAcksDoNotCountAsRevokeCost) {
  Restart(Options{.epoch = 1, .term_ms = 100000, .min_hold_ms = 2, .max_hold_ms = 50});
  Actions out;
  EXPECT_FALSE(sm_->OpenSession(1, now_, &out, /*lingers=*/true));
  Open({2});
  Acquire(1, kF, Mode::kWrite);
  now_ += 1;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_EQ(last_[0].linger_ms, 1u);
  now_ += 40;
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c2 f10 W r2");
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite));
  EXPECT_EQ(sm_->NextDeadline(), now_ + 2) << "the 40 ms lingered count as cost";
  // A revoke sent after the hold counts as before.
  now_ += 2;
  EXPECT_ACTIONS(Tick(), "revoke c2 f10 ->N");
  now_ += 30;
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c1 f10 W r3");
  now_ += 29;
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  EXPECT_EQ(last_[0].linger_ms, 1u) << "a hold of the 30 ms the handoff cost";
}

TEST_F(LeaseTest, DeferredRevokeIsDroppedWhenTheWaiterLeaves) {
  Restart(Options{.epoch = 1, .term_ms = 1000, .min_hold_ms = 10});
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead));
  EXPECT_ACTIONS(Gone(2));
  EXPECT_EQ(sm_->queue_length(kF), 0u);
  now_ += 10;
  EXPECT_ACTIONS(Tick());
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kWrite);
}

TEST_F(LeaseTest, HeartbeatsKeepASessionAlive) {
  Open({1});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_EQ(sm_->NextDeadline(), 2000u);
  now_ = 1900;
  EXPECT_EQ(sm_->Heartbeat(1, now_), Status::kOk);
  EXPECT_EQ(sm_->NextDeadline(), 2900u);
  now_ = 2000;
  EXPECT_ACTIONS(Tick());
  now_ = 2899;
  EXPECT_ACTIONS(Tick());
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kWrite);
  now_ = 2900;
  EXPECT_ACTIONS(Tick(), "expired c1");
  EXPECT_EQ(sm_->lease_count(), 0u);
  EXPECT_EQ(sm_->session_count(), 0u);
  EXPECT_EQ(sm_->NextDeadline(), kNoDeadline);
}

TEST_F(LeaseTest, ExpiryOfASilentHolderReleasesItsWaiters) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(1, kG, Mode::kRead);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead), "revoke c1 f10 ->R");
  EXPECT_ACTIONS(Acquire(3, kG, Mode::kWrite), "revoke c1 f11 ->N");
  now_ = 1999;
  EXPECT_EQ(sm_->Heartbeat(2, now_), Status::kOk);
  EXPECT_EQ(sm_->Heartbeat(3, now_), Status::kOk);
  EXPECT_ACTIONS(Tick());
  now_ = 2000;
  EXPECT_ACTIONS(Tick(), "expired c1", "grant c2 f10 R r3", "grant c3 f11 W r4");
  EXPECT_EQ(sm_->counters().expiries, 1u);
  Actions out;
  EXPECT_EQ(sm_->Heartbeat(1, now_), Status::kNoSession);
  EXPECT_EQ(sm_->Acquire(1, 99, kF, Mode::kRead, ByteRange{}, now_, &out), Status::kNoSession);
  EXPECT_TRUE(out.empty());
}

TEST_F(LeaseTest, ExpiryDropsTheSilentClientsQueuedRequests) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kF, Mode::kWrite);
  Acquire(3, kF, Mode::kRead);
  now_ = 1999;
  EXPECT_EQ(sm_->Heartbeat(1, now_), Status::kOk);
  EXPECT_EQ(sm_->Heartbeat(3, now_), Status::kOk);
  now_ = 2000;
  EXPECT_ACTIONS(Tick(), "expired c2");
  EXPECT_EQ(sm_->queue_length(kF), 1u);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c3 f10 R r3");
}

TEST_F(LeaseTest, DisconnectedClientKeepsItsLeasesUntilTheTermButLosesItsRequests) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kG, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(1, kG, Mode::kWrite), "revoke c2 f11 ->N");
  EXPECT_ACTIONS(Gone(1));
  EXPECT_EQ(sm_->queue_length(kG), 0u);
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kWrite);
  // No revoke goes to a disconnected holder.
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite));
  now_ = 1999;
  EXPECT_EQ(sm_->Heartbeat(2, now_), Status::kOk);
  EXPECT_EQ(sm_->Heartbeat(1, now_), Status::kNoSession);
  EXPECT_ACTIONS(Tick());
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kWrite);
  now_ = 2000;
  EXPECT_ACTIONS(Tick(), "expired c1", "grant c2 f10 W r4");
}

TEST_F(LeaseTest, ResumedSessionKeepsItsLeasesAndGetsItsRevokesAgain) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(1, kG, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  const uint64_t id = last_[0].revoke_id;
  Gone(1);
  EXPECT_ACTIONS(Acquire(3, kG, Mode::kRead));
  now_ = 1500;
  Actions out;
  EXPECT_TRUE(sm_->OpenSession(1, now_, &out));
  EXPECT_EQ(Describe(out), (Strings{"revoke c1 f10 ->N", "revoke c1 f11 ->R"}));
  EXPECT_EQ(out[0].revoke_id, id);
  EXPECT_EQ(sm_->counters().revokes, 2u);  // the re-sent one is not new
  EXPECT_EQ(sm_->NextDeadline(), 2000u);   // c2 and c3 expire first; c1 was renewed
  out.clear();
  EXPECT_EQ(sm_->RevokeAck(1, kF, id, Mode::kNone, now_, &out), Status::kOk);
  EXPECT_EQ(Describe(out), (Strings{"grant c2 f10 W r3"}));
}

TEST_F(LeaseTest, OpeningAnExpiredSessionStartsAfresh) {
  Open({1});
  Acquire(1, kF, Mode::kWrite);
  now_ = 2000;
  EXPECT_ACTIONS(Tick(), "expired c1");
  Actions out;
  EXPECT_FALSE(sm_->OpenSession(1, now_, &out));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(sm_->HeldMode(1, kF), Mode::kNone);
}

TEST_F(LeaseTest, VoluntaryReleaseServesWaiters) {
  Open({1, 2});
  Acquire(1, kF, Mode::kRead);
  EXPECT_ACTIONS(Release(1, kF));
  EXPECT_EQ(sm_->lease_count(), 0u);
  Acquire(1, kF, Mode::kWrite);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead), "revoke c1 f10 ->R");
  // Releasing instead of acking is fine and supersedes the revoke.
  EXPECT_ACTIONS(Release(1, kF), "grant c2 f10 R r3");
  Actions out;
  EXPECT_EQ(sm_->Release(1, kF, now_, &out), Status::kStale);
  EXPECT_EQ(sm_->RevokeAck(1, kF, revoke_ids_[{1, kF}], Mode::kRead, now_, &out), Status::kStale);
  EXPECT_TRUE(out.empty());
}

TEST_F(LeaseTest, RejectsMalformedRequests) {
  Open({1});
  Actions out;
  EXPECT_EQ(sm_->Acquire(1, 1, kF, Mode::kNone, ByteRange{}, now_, &out), Status::kInvalid);
  EXPECT_EQ(sm_->Acquire(1, 1, kF, Mode::kRead, ByteRange{5, 4}, now_, &out), Status::kInvalid);
  EXPECT_EQ(sm_->Acquire(7, 1, kF, Mode::kRead, ByteRange{}, now_, &out), Status::kNoSession);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(sm_->lease_count(), 0u);
  EXPECT_EQ(sm_->queue_length(kF), 0u);
}

TEST_F(LeaseTest, ARangeRequestIsGrantedTheWholeFile) {
  Open({1});
  Actions out;
  EXPECT_EQ(sm_->Acquire(1, 1, kF, Mode::kRead, ByteRange{4096, 8191}, now_, &out), Status::kOk);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].range.start, 0u);
  EXPECT_EQ(out[0].range.end, UINT64_MAX);
}

TEST_F(LeaseTest, TokensIncreaseAcrossFilesAndEpochs) {
  Open({1, 2});
  std::vector<uint64_t> tokens;
  for (uint64_t gfid = 100; gfid < 105; gfid++) {
    Acquire(1, gfid, Mode::kWrite);
    tokens.push_back(GrantToken());
  }
  Acquire(1, kF, Mode::kRead);
  Acquire(1, kF, Mode::kWrite);  // upgrade: a new WRITE grant
  tokens.push_back(GrantToken());
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kWrite), "revoke c1 f10 ->N");
  Ack(1, kF, Mode::kNone);
  tokens.push_back(GrantToken());
  Restart(Options{.epoch = 2, .term_ms = 1000});
  Open({1});
  Acquire(1, 100, Mode::kWrite);
  tokens.push_back(GrantToken());
  EXPECT_EQ(tokens.back(), Token(2, 1));
  for (size_t i = 1; i < tokens.size(); i++) EXPECT_LT(tokens[i - 1], tokens[i]) << i;
  EXPECT_EQ(tokens[6], Token(1, 7));
}

TEST_F(LeaseTest, EpochMustFitIn24Bits) {
  EXPECT_THROW(StateMachine(Options{.epoch = uint64_t{1} << 24}), std::invalid_argument);
  EXPECT_NO_THROW(StateMachine(Options{.epoch = (uint64_t{1} << 24) - 1}));
}

TEST_F(LeaseTest, ReclaimWindowReinstallsLeasesAndHoldsBackAcquires) {
  Restart(Options{.epoch = 2, .term_ms = 1000});
  sm_->BeginReclaim(now_, 50);
  EXPECT_TRUE(sm_->reclaiming());
  EXPECT_EQ(sm_->NextDeadline(), 1050u);
  Open({1, 2, 3});
  const uint64_t old = Token(1, 5);
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kWrite, old, now_), Status::kOk);
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kWrite, old, now_), Status::kOk);  // idempotent
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kRead, 0, now_), Status::kRefused);
  EXPECT_EQ(sm_->Reclaim(2, kF, Mode::kWrite, Token(1, 4), now_), Status::kRefused);
  EXPECT_EQ(sm_->Reclaim(2, kF, Mode::kRead, 0, now_), Status::kRefused);
  EXPECT_EQ(sm_->Reclaim(2, kG, Mode::kRead, 0, now_), Status::kOk);
  EXPECT_EQ(sm_->Reclaim(3, kG, Mode::kRead, 0, now_), Status::kOk);
  EXPECT_EQ(sm_->Reclaim(3, kG, Mode::kWrite, Token(1, 6), now_), Status::kRefused);
  EXPECT_EQ(sm_->Reclaim(9, kG, Mode::kRead, 0, now_), Status::kNoSession);
  EXPECT_EQ(sm_->counters().reclaims, 3u);
  EXPECT_EQ(sm_->holders(kF), (std::vector<ClientId>{1}));
  EXPECT_EQ(sm_->holders(kG), (std::vector<ClientId>{2, 3}));

  // Acquires wait for the window to close, even compatible ones.
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kWrite));
  EXPECT_ACTIONS(Acquire(1, 12, Mode::kRead));
  // A holder re-asking for what it reclaimed is answered.
  EXPECT_ACTIONS(Acquire(2, kG, Mode::kRead), "grant c2 f11 R r3");
  now_ = 1049;
  EXPECT_ACTIONS(Tick());
  now_ = 1050;
  EXPECT_ACTIONS(Tick(), "revoke c1 f10 ->N", "grant c1 f12 R r2");
  EXPECT_FALSE(last_[1].unchanged);
  EXPECT_FALSE(sm_->reclaiming());
  EXPECT_EQ(sm_->Reclaim(2, 13, Mode::kRead, 0, now_), Status::kRefused);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone), "grant c3 f10 W r1");
  EXPECT_EQ(last_[0].token, Token(2, 1));
  EXPECT_GT(last_[0].token, old);
}

TEST_F(LeaseTest, ReclaimValidatesTokensAndRaisesTheCounterPastThem) {
  Restart(Options{.epoch = 2, .term_ms = 1000});
  sm_->BeginReclaim(now_, 50);
  Open({1, 2});
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kWrite, 0, now_), Status::kInvalid);
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kWrite, Token(3, 1), now_), Status::kInvalid);
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kNone, 0, now_), Status::kInvalid);
  // A restart that kept its epoch: the counter resumes above the token.
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kWrite, Token(2, 7), now_), Status::kOk);
  now_ += 50;
  Tick();
  Acquire(2, kG, Mode::kWrite);
  EXPECT_EQ(GrantToken(), Token(2, 8));
}

TEST_F(LeaseTest, AWriteLeaseReclaimedDuringAnUpgradeMakesItsGrantChanged) {
  Restart(Options{.epoch = 2, .term_ms = 1000});
  sm_->BeginReclaim(now_, 50);
  Open({1, 2});
  EXPECT_EQ(sm_->Reclaim(1, kF, Mode::kRead, 0, now_), Status::kOk);
  EXPECT_EQ(sm_->Reclaim(1, kG, Mode::kRead, 0, now_), Status::kOk);
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kWrite));  // gives up READ, waits for the window
  EXPECT_ACTIONS(Acquire(1, kG, Mode::kWrite));
  EXPECT_EQ(sm_->Reclaim(2, kF, Mode::kWrite, Token(1, 3), now_), Status::kOk);
  now_ += 50;
  EXPECT_ACTIONS(Tick(), "revoke c2 f10 ->N", "grant c1 f11 W r2");
  EXPECT_TRUE(last_[1].unchanged);
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c1 f10 W r1");
  EXPECT_FALSE(last_[0].unchanged);
}

// --- Hand-offs: what the last WRITE holder left the file as ---

TEST_F(LeaseTest, AWriteHoldersHandoffGoesToEveryNewHolder) {
  Open({1, 2, 3, 4});
  Acquire(1, kF, Mode::kWrite);
  EXPECT_EQ(Handoffs(), (Strings{""}));  // nobody wrote before
  Acquire(2, kF, Mode::kRead);
  Acquire(3, kF, Mode::kRead);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kRead, "size 7"), "grant c2 f10 R r2", "grant c3 f10 R r3");
  EXPECT_EQ(Handoffs(), (Strings{"size 7", "size 7"}));
  // Readers change nothing: their acks keep it, for a writer too.
  EXPECT_ACTIONS(Acquire(4, kF, Mode::kWrite), "revoke c1 f10 ->N", "revoke c2 f10 ->N",
                 "revoke c3 f10 ->N");
  Ack(1, kF, Mode::kNone, "forged by a reader");
  Ack(2, kF, Mode::kNone);
  EXPECT_ACTIONS(Ack(3, kF, Mode::kNone), "grant c4 f10 W r4");
  EXPECT_EQ(Handoffs(), (Strings{"size 7"}));
  EXPECT_EQ(sm_->counters().handoffs, 3u);
}

TEST_F(LeaseTest, AHolderReacquiringGetsNoHandoff) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kF, Mode::kRead);
  Ack(1, kF, Mode::kRead, "size 7");
  // c1 cached under its own lease what it wrote: the hand-off is not news.
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead), "grant c1 f10 R r3");
  EXPECT_EQ(Handoffs(), (Strings{""}));
}

TEST_F(LeaseTest, AWriteLeaseAckedWithoutAHandoffClearsIt) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kF, Mode::kWrite);
  EXPECT_ACTIONS(Ack(1, kF, Mode::kNone, "size 7"), "grant c2 f10 W r2");
  EXPECT_EQ(Handoffs(), (Strings{"size 7"}));
  // c2 may have changed the file without writing anything back.
  Acquire(3, kF, Mode::kRead);
  EXPECT_ACTIONS(Ack(2, kF, Mode::kNone), "grant c3 f10 R r3");
  EXPECT_EQ(Handoffs(), (Strings{""}));
}

TEST_F(LeaseTest, AReleasedWriteLeaseClearsTheHandoff) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kF, Mode::kWrite);
  Ack(1, kF, Mode::kNone, "size 7");
  Acquire(3, kF, Mode::kRead);
  EXPECT_ACTIONS(Release(2, kF), "grant c3 f10 R r3");
  EXPECT_EQ(Handoffs(), (Strings{""}));
}

TEST_F(LeaseTest, AReleasedReadLeaseKeepsTheHandoff) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kF, Mode::kRead);
  Ack(1, kF, Mode::kRead, "size 7");
  Release(1, kF);
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kRead), "grant c3 f10 R r3");
  EXPECT_EQ(Handoffs(), (Strings{"size 7"}));
}

TEST_F(LeaseTest, AnExpiredWriteHolderClearsTheHandoff) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  Acquire(2, kF, Mode::kWrite);
  Ack(1, kF, Mode::kNone, "size 7");
  now_ = 1500;
  EXPECT_EQ(sm_->Heartbeat(3, now_), Status::kOk);
  EXPECT_ACTIONS(Acquire(3, kF, Mode::kRead), "revoke c2 f10 ->R");
  now_ = 2000;  // c2 falls silent with the WRITE lease
  EXPECT_ACTIONS(Tick(), "expired c1", "expired c2", "grant c3 f10 R r3");
  EXPECT_EQ(Handoffs(), (Strings{""}));
}

// --- Kept caches: what changed since a version ---

TEST_F(LeaseTest, AKeptCacheIsToldWhatEveryWriterSinceHandedOver) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  const uint64_t v1 = GrantTo(1).version;
  EXPECT_EQ(v1, GrantTo(1).token) << "a WRITE grant's version is its token";
  Acquire(2, kF, Mode::kWrite);
  Ack(1, kF, Mode::kNone, "c1 wrote");
  EXPECT_GT(GrantTo(2).version, v1);
  Acquire(3, kF, Mode::kWrite);
  Ack(2, kF, Mode::kNone, "c2 wrote");
  // c1 kept what it cached under v1: c1's own writes are in it, c2's and
  // c3's are not.
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead, v1), "revoke c3 f10 ->R");
  EXPECT_ACTIONS(Ack(3, kF, Mode::kRead, "c3 wrote"), "grant c1 f10 R r4");
  const Action g = GrantTo(1);
  EXPECT_TRUE(g.since_known);
  EXPECT_EQ(g.since, (Strings{"c2 wrote", "c3 wrote"}));
  // A READ grant's version is the last token: nothing is written since.
  Release(1, kF);
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead, g.version), "grant c1 f10 R r5");
  EXPECT_TRUE(GrantTo(1).since_known);
  EXPECT_TRUE(GrantTo(1).since.empty());
  // Without a known version nothing is said, nor for one no grant had.
  Release(1, kF);
  Acquire(1, kF, Mode::kRead);
  EXPECT_FALSE(GrantTo(1).since_known);
  Release(1, kF);
  Acquire(1, kF, Mode::kRead, Token(2, 1));
  EXPECT_FALSE(GrantTo(1).since_known) << "a version from a later manager";
  EXPECT_EQ(sm_->counters().since_known, 2u);
}

TEST_F(LeaseTest, AWriterAckedWithoutAHandoffMakesWhatChangedUnknown) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kWrite);
  const uint64_t v1 = GrantTo(1).version;
  Acquire(2, kF, Mode::kWrite);
  Ack(1, kF, Mode::kNone, "c1 wrote");
  Acquire(3, kF, Mode::kWrite);
  Ack(2, kF, Mode::kNone);  // c2 may have written: nobody can say what
  const uint64_t v3 = GrantTo(3).version;
  Acquire(1, kF, Mode::kRead, v1);
  Ack(3, kF, Mode::kRead, "c3 wrote");
  EXPECT_FALSE(GrantTo(1).since_known);
  EXPECT_TRUE(GrantTo(1).since.empty());
  EXPECT_EQ(sm_->counters().since_not_handed, 1u);
  EXPECT_EQ(sm_->counters().since_before_log, 0u);
  // A cache from after c2 needs only what came after it.
  Release(1, kF);
  Acquire(1, kF, Mode::kRead, v3 - 1);
  EXPECT_TRUE(GrantTo(1).since_known);
  EXPECT_EQ(GrantTo(1).since, (Strings{"c3 wrote"}));
}

TEST_F(LeaseTest, AReleasedWriteLeaseMakesWhatChangedUnknown) {
  Open({1, 2});
  Acquire(2, kF, Mode::kRead);
  const uint64_t v0 = GrantTo(2).version;
  Acquire(1, kF, Mode::kWrite);
  Ack(2, kF, Mode::kNone);
  EXPECT_ACTIONS(Acquire(2, kF, Mode::kRead, v0), "revoke c1 f10 ->R");
  EXPECT_ACTIONS(Release(1, kF), "grant c2 f10 R r3");
  EXPECT_FALSE(GrantTo(2).since_known);
}

TEST_F(LeaseTest, AnExpiredWriterMakesWhatChangedUnknown) {
  Open({1, 2});
  Acquire(1, kF, Mode::kWrite);
  const uint64_t v1 = GrantTo(1).version;
  Acquire(2, kF, Mode::kWrite);
  Ack(1, kF, Mode::kNone, "c1 wrote");
  now_ = 1500;
  EXPECT_EQ(sm_->Heartbeat(1, now_), Status::kOk);
  EXPECT_ACTIONS(Acquire(1, kF, Mode::kRead, v1), "revoke c2 f10 ->R");
  now_ = 2000;  // c2 falls silent with the WRITE lease
  EXPECT_ACTIONS(Tick(), "expired c2", "grant c1 f10 R r3");
  EXPECT_FALSE(GrantTo(1).since_known);
}

TEST_F(LeaseTest, AVersionOlderThanTheFilesLogIsUnknown) {
  Open({1, 2, 3});
  Acquire(1, kF, Mode::kRead);
  const uint64_t v0 = GrantTo(1).version;
  Release(1, kF);
  // The file's entry went with its last holder: a new one cannot tell
  // what c1 missed, unless no WRITE lease went anywhere since.
  Acquire(1, kF, Mode::kRead, v0);
  EXPECT_TRUE(GrantTo(1).since_known);
  Release(1, kF);
  Acquire(2, kG, Mode::kWrite);  // another file's
  Acquire(1, kF, Mode::kRead, v0);
  EXPECT_FALSE(GrantTo(1).since_known);
  // The log keeps the last kMaxLog writers: c2 and c3 take turns, c1's
  // READ lease (at v) goes to the first.
  const uint64_t v = GrantTo(1).version;
  for (size_t i = 0; i < StateMachine::kMaxLog; i++) {
    const ClientId writer = 2 + i % 2;
    Acquire(writer, kF, Mode::kWrite);
    Ack(i == 0 ? 1 : 5 - writer, kF, Mode::kNone, "wrote");
  }
  const ClientId last = 2 + (StateMachine::kMaxLog - 1) % 2;
  Acquire(1, kF, Mode::kRead, v);
  Ack(last, kF, Mode::kRead, "wrote");
  EXPECT_TRUE(GrantTo(1).since_known);
  EXPECT_EQ(GrantTo(1).since.size(), StateMachine::kMaxLog);
  Acquire(last, kF, Mode::kWrite);
  Ack(1, kF, Mode::kNone);
  Acquire(1, kF, Mode::kRead, v);
  Ack(last, kF, Mode::kRead, "wrote");
  EXPECT_FALSE(GrantTo(1).since_known) << "the oldest writer is forgotten";
  EXPECT_EQ(sm_->counters().since_before_log, 2u);
  EXPECT_EQ(sm_->counters().since_not_handed, 0u);
  EXPECT_EQ(sm_->counters().since_unknown, 2u);
}

TEST_F(LeaseTest, AReclaimedWriteLeaseMakesWhatChangedUnknown) {
  Open({1, 2});
  Acquire(1, kF, Mode::kRead);
  const uint64_t v = GrantTo(1).version;
  Restart(Options{.epoch = 2, .term_ms = 1000});
  sm_->BeginReclaim(now_, 100);
  Actions out;
  sm_->OpenSession(1, now_, &out);
  sm_->OpenSession(2, now_, &out);
  ASSERT_EQ(sm_->Reclaim(2, kF, Mode::kWrite, Token(1, 9), now_), Status::kOk);
  Acquire(1, kF, Mode::kRead, v);
  now_ += 100;
  EXPECT_ACTIONS(Tick(), "revoke c2 f10 ->R");
  EXPECT_ACTIONS(Ack(2, kF, Mode::kRead, "c2 wrote"), "grant c1 f10 R r2");
  EXPECT_FALSE(GrantTo(1).since_known);
}

}  // namespace
}  // namespace dfuse::lease
