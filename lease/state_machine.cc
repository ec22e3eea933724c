#include "lease/state_machine.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace dfuse::lease {

namespace {

// Fencing tokens and revoke ids are (epoch << kCounterBits) | counter, so a
// new manager's values exceed every value of the managers before it.
constexpr int kCounterBits = 40;
constexpr uint64_t kCounterMask = (uint64_t{1} << kCounterBits) - 1;
constexpr uint64_t kMaxEpoch = (uint64_t{1} << (64 - kCounterBits)) - 1;

constexpr ByteRange kWholeFile{0, UINT64_MAX};

bool Conflict(Mode a, Mode b) { return a == Mode::kWrite || b == Mode::kWrite; }

}  // namespace

StateMachine::StateMachine(const Options& options) : options_(options) {
  if (options.epoch > kMaxEpoch) {
    throw std::invalid_argument("lease manager epoch does not fit in 24 bits");
  }
  last_revoke_id_ = options.epoch << kCounterBits;
}

// --- Sessions ---

bool StateMachine::OpenSession(ClientId client, uint64_t now_ms, Actions* out, bool lingers) {
  auto [it, created] = sessions_.try_emplace(client);
  Session& session = it->second;
  session.connected = true;
  session.lingers = lingers;
  Renew(client, session, now_ms);
  if (created) return false;
  for (uint64_t gfid : SortedFiles(session)) {
    File& file = files_.at(gfid);
    const Holder* holder = FindHolder(file, client);
    if (holder != nullptr && holder->revoke_id != 0) {
      out->push_back({.kind = Action::kRevoke,
                      .client = client,
                      .gfid = gfid,
                      .mode = holder->revoke_to,
                      .revoke_id = holder->revoke_id,
                      .linger_ms = LingerLeft(*holder, now_ms)});
    }
    Advance(gfid, now_ms, out);  // revokes skipped while it was away
  }
  return true;
}

Status StateMachine::Heartbeat(ClientId client, uint64_t now_ms) {
  auto it = sessions_.find(client);
  if (it == sessions_.end() || !it->second.connected) return Status::kNoSession;
  Renew(client, it->second, now_ms);
  return Status::kOk;
}

void StateMachine::ClientGone(ClientId client, uint64_t now_ms, Actions* out) {
  auto it = sessions_.find(client);
  if (it == sessions_.end()) return;
  it->second.connected = false;
  for (uint64_t gfid : SortedFiles(it->second)) {
    std::deque<Waiter>& waiters = files_.at(gfid).waiters;
    const size_t before = waiters.size();
    std::erase_if(waiters, [client](const Waiter& w) { return w.client == client; });
    for (size_t i = waiters.size(); i < before; i++) Unref(client, gfid);
    Advance(gfid, now_ms, out);  // its request may have been blocking others
  }
}

void StateMachine::Renew(ClientId client, Session& session, uint64_t now_ms) {
  expiry_.erase({session.expires_ms, client});
  session.expires_ms = now_ms + options_.term_ms;
  expiry_.emplace(session.expires_ms, client);
}

std::vector<uint64_t> StateMachine::SortedFiles(const Session& session) {
  // Sorted so that the order of actions does not depend on hashing.
  std::vector<uint64_t> gfids;
  gfids.reserve(session.refs.size());
  for (const auto& [gfid, count] : session.refs) gfids.push_back(gfid);
  std::sort(gfids.begin(), gfids.end());
  return gfids;
}

void StateMachine::Ref(ClientId client, uint64_t gfid) { sessions_.at(client).refs[gfid]++; }

void StateMachine::Unref(ClientId client, uint64_t gfid) {
  auto& refs = sessions_.at(client).refs;
  auto it = refs.find(gfid);
  if (--it->second == 0) refs.erase(it);
}

// --- Leases ---

Status StateMachine::Acquire(ClientId client, uint64_t request_id, uint64_t gfid, Mode mode,
                             ByteRange range, uint64_t now_ms, Actions* out,
                             uint64_t known_version) {
  if (mode == Mode::kNone || range.start > range.end) return Status::kInvalid;
  auto session = sessions_.find(client);
  if (session == sessions_.end() || !session->second.connected) return Status::kNoSession;

  File& file = FileEntry(gfid);
  Holder* holder = FindHolder(file, client);
  // A holder with a revoke outstanding queues instead: a grant now would
  // reach it after the revoke and contradict it.
  if (holder != nullptr && holder->revoke_id == 0 && holder->mode >= mode) {
    counters_.grants++;
    out->push_back({.kind = Action::kGrant,
                    .client = client,
                    .gfid = gfid,
                    .mode = holder->mode,
                    .token = holder->token,
                    .request_id = request_id,
                    .version = holder->mode == Mode::kWrite ? holder->token : LastToken(),
                    .range = kWholeFile});
    return Status::kOk;
  }
  const bool upgrade = holder != nullptr && holder->mode == Mode::kRead && mode == Mode::kWrite;
  if (upgrade) RemoveHolder(file, client, gfid);  // the READ lease is given up first
  file.waiters.push_back(
      {client, request_id, mode, upgrade, file.write_grants, known_version, now_ms});
  Ref(client, gfid);
  Advance(gfid, now_ms, out);
  return Status::kOk;
}

Status StateMachine::RevokeAck(ClientId client, uint64_t gfid, uint64_t revoke_id, Mode acked,
                               uint64_t now_ms, Actions* out, std::string handoff) {
  auto it = files_.find(gfid);
  if (it == files_.end()) return Status::kStale;
  File& file = it->second;
  Holder* holder = FindHolder(file, client);
  if (holder == nullptr || holder->revoke_id == 0 || holder->revoke_id != revoke_id) {
    return Status::kStale;
  }
  if (acked > holder->revoke_to) return Status::kInvalid;
  if (holder->mode == Mode::kWrite) {
    for (WriteLease& w : file.log) {
      if (w.token != holder->token) continue;
      w.handed_over = !handoff.empty();
      w.handoff = handoff;
    }
    file.handoff = std::move(handoff);
  }
  // A re-sent revoke (after a resume) counts from its first sending, the
  // cost a waiter saw, but no sample counts for more than the longest hold:
  // one disconnection must not pin the file's hold at the maximum. The ack
  // of a lingered revoke says how long the holder kept using the lease,
  // not what giving it up cost.
  if (holder->linger_ms == 0) {
    const uint64_t cost_us =
        1000 * std::min(now_ms - std::min(now_ms, holder->revoked_ms), options_.max_hold_ms);
    file.revoke_cost_us = file.revoke_cost_seen ? (3 * file.revoke_cost_us + cost_us) / 4 : cost_us;
    file.revoke_cost_seen = true;
  }
  if (acked == Mode::kNone) {
    RemoveHolder(file, client, gfid);
  } else {
    holder->mode = acked;
    holder->token = 0;
    holder->revoke_id = 0;
  }
  Advance(gfid, now_ms, out);
  return Status::kOk;
}

Status StateMachine::Release(ClientId client, uint64_t gfid, uint64_t now_ms, Actions* out) {
  auto it = files_.find(gfid);
  const Holder* holder = it == files_.end() ? nullptr : FindHolder(it->second, client);
  if (holder == nullptr) return Status::kStale;
  // Its data is durable, but what it left the file as is not known here.
  if (holder->mode == Mode::kWrite) it->second.handoff.clear();
  RemoveHolder(it->second, client, gfid);
  Advance(gfid, now_ms, out);
  return Status::kOk;
}

uint64_t StateMachine::LingerLeft(const Holder& holder, uint64_t now_ms) {
  const uint64_t until_ms = holder.revoked_ms + holder.linger_ms;
  return now_ms < until_ms ? until_ms - now_ms : 0;
}

uint64_t StateMachine::HoldMs(const File& file) const {
  if (options_.max_hold_ms <= options_.min_hold_ms) return options_.min_hold_ms;
  const uint64_t cost_ms = (file.revoke_cost_us + 999) / 1000;
  return std::clamp(cost_ms, options_.min_hold_ms, options_.max_hold_ms);
}

StateMachine::Holder* StateMachine::FindHolder(File& file, ClientId client) {
  for (Holder& holder : file.holders) {
    if (holder.client == client) return &holder;
  }
  return nullptr;
}

void StateMachine::RemoveHolder(File& file, ClientId client, uint64_t gfid) {
  std::erase_if(file.holders, [client](const Holder& h) { return h.client == client; });
  Unref(client, gfid);
}

uint64_t StateMachine::LastToken() const {
  return (options_.epoch << kCounterBits) | token_counter_;
}

StateMachine::File& StateMachine::FileEntry(uint64_t gfid) {
  auto [it, made] = files_.try_emplace(gfid);
  // WRITE leases granted before are not in the new log: a cache kept from
  // before now cannot be told what they changed.
  if (made) it->second.log_start = LastToken();
  return it->second;
}

void StateMachine::TellSince(const File& file, uint64_t known_version, Action* grant) {
  if (known_version == 0) return;
  // A version below log_start is from before the log: WRITE leases that
  // are not in it may have come since. One above the last token is from no
  // grant of this manager (a newer manager's, if this one was deposed).
  if (known_version < file.log_start || known_version > LastToken()) {
    counters_.since_unknown++;
    counters_.since_before_log++;
    return;
  }
  for (const WriteLease& w : file.log) {
    if (w.token <= known_version) continue;  // the kept cache has its changes
    if (!w.handed_over) {
      grant->since.clear();
      counters_.since_unknown++;
      counters_.since_not_handed++;
      return;
    }
    grant->since.push_back(w.handoff);
  }
  grant->since_known = true;
  counters_.since_known++;
}

uint64_t StateMachine::NewToken() {
  if (token_counter_ == kCounterMask) {
    // 2^40 WRITE grants in one epoch. Wrapping would break fencing; a
    // restart under the next epoch does not.
    std::fprintf(stderr, "lease manager: fencing tokens of epoch %llu exhausted\n",
                 static_cast<unsigned long long>(options_.epoch));
    std::abort();
  }
  return (options_.epoch << kCounterBits) | ++token_counter_;
}

void StateMachine::Advance(uint64_t gfid, uint64_t now_ms, Actions* out) {
  auto it = files_.find(gfid);
  if (it == files_.end()) return;
  File& file = it->second;
  if (!reclaiming_) {
    while (!file.waiters.empty() && Grantable(file, file.waiters.front())) {
      const Waiter waiter = file.waiters.front();
      file.waiters.pop_front();
      Grant(file, gfid, waiter, now_ms, out);
    }
    if (!file.waiters.empty()) RevokeBlockers(file, gfid, now_ms, out);
  }
  if (file.holders.empty() && file.waiters.empty()) files_.erase(it);
}

bool StateMachine::Grantable(const File& file, const Waiter& waiter) {
  for (const Holder& holder : file.holders) {
    if (holder.client == waiter.client) {
      if (holder.revoke_id != 0) return false;  // wait for its own ack
    } else if (Conflict(holder.mode, waiter.mode)) {
      return false;
    }
  }
  return true;
}

void StateMachine::Grant(File& file, uint64_t gfid, const Waiter& waiter, uint64_t now_ms,
                         Actions* out) {
  Holder* holder = FindHolder(file, waiter.client);
  const bool new_holder = holder == nullptr;
  bool stronger = true;
  if (new_holder) {
    // The waiter's reference on the file passes to the new holder.
    file.holders.push_back({waiter.client, waiter.mode, 0, now_ms, 0, Mode::kNone, 0, 0});
    holder = &file.holders.back();
  } else {
    Unref(waiter.client, gfid);  // the holder already has its reference
    stronger = waiter.mode > holder->mode;
    if (stronger) {
      holder->mode = waiter.mode;
      holder->granted_ms = now_ms;
    }
  }
  const bool unchanged = waiter.upgrade && waiter.write_grants == file.write_grants;
  Action grant{.kind = Action::kGrant,
               .client = waiter.client,
               .gfid = gfid,
               .request_id = waiter.request_id,
               .unchanged = unchanged,
               .range = kWholeFile};
  // Before this grant joins the log: its own changes are to come.
  if (new_holder) {
    TellSince(file, waiter.known_version, &grant);
  }
  if (stronger && holder->mode == Mode::kWrite) {
    holder->token = NewToken();
    file.write_grants++;
    file.log.push_back({holder->token});
    if (file.log.size() > kMaxLog) {
      file.log_start = file.log.front().token;
      file.log.pop_front();
    }
  }
  counters_.grants++;
  // A holder already has what it cached under its lease: only a new one
  // needs the hand-off.
  const bool handoff = new_holder && !file.handoff.empty();
  if (handoff) counters_.handoffs++;
  grant.mode = holder->mode;
  grant.token = holder->token;
  grant.handoff = handoff ? file.handoff : std::string();
  grant.version = holder->mode == Mode::kWrite ? holder->token : LastToken();
  out->push_back(std::move(grant));
}

void StateMachine::RevokeBlockers(File& file, uint64_t gfid, uint64_t now_ms, Actions* out) {
  const Waiter& head = file.waiters.front();
  // Only a WRITE holder can block a READ request; downgrading it keeps its
  // clean cache.
  const Mode target = head.mode == Mode::kRead ? Mode::kRead : Mode::kNone;
  for (Holder& holder : file.holders) {
    if (holder.client == head.client || holder.revoke_id != 0) continue;
    if (!Conflict(holder.mode, head.mode)) continue;
    const Session& session = sessions_.at(holder.client);
    if (!session.connected) continue;  // sent when it resumes
    const uint64_t due_ms = holder.granted_ms + HoldMs(file);
    if (now_ms < due_ms && !session.lingers) {
      revoke_due_.emplace(due_ms, gfid);
      continue;
    }
    holder.revoke_id = ++last_revoke_id_;
    holder.revoke_to = target;
    holder.revoked_ms = now_ms;
    holder.linger_ms = now_ms < due_ms ? due_ms - now_ms : 0;
    counters_.revokes++;
    out->push_back({.kind = Action::kRevoke,
                    .client = holder.client,
                    .gfid = gfid,
                    .mode = target,
                    .revoke_id = holder.revoke_id,
                    .linger_ms = holder.linger_ms});
  }
}

// --- Failover ---

void StateMachine::BeginReclaim(uint64_t now_ms, uint64_t window_ms) {
  reclaiming_ = true;
  reclaim_end_ms_ = now_ms + window_ms;
}

Status StateMachine::Reclaim(ClientId client, uint64_t gfid, Mode mode, uint64_t token,
                             uint64_t now_ms) {
  if (mode == Mode::kNone) return Status::kInvalid;
  if (mode == Mode::kWrite && (token == 0 || (token >> kCounterBits) > options_.epoch)) {
    return Status::kInvalid;
  }
  auto session = sessions_.find(client);
  if (session == sessions_.end() || !session->second.connected) return Status::kNoSession;
  if (!reclaiming_) return Status::kRefused;

  File& file = FileEntry(gfid);
  for (const Holder& holder : file.holders) {
    if (holder.client == client) return holder.mode == mode ? Status::kOk : Status::kRefused;
    if (Conflict(holder.mode, mode)) return Status::kRefused;
  }
  // Conflicts return before this point only when the file has holders, so
  // FileEntry never leaves an empty entry behind.
  if (mode == Mode::kWrite) {
    if ((token >> kCounterBits) == options_.epoch) {
      token_counter_ = std::max(token_counter_, token & kCounterMask);
    }
    file.write_grants++;
    // Its token is older than the log: start the log after it.
    file.log.clear();
    file.log_start = LastToken();
  } else {
    token = 0;
  }
  file.holders.push_back({client, mode, token, now_ms, 0, Mode::kNone, 0, 0});
  Ref(client, gfid);
  counters_.reclaims++;
  return Status::kOk;
}

// --- Time ---

void StateMachine::Tick(uint64_t now_ms, Actions* out) {
  while (!expiry_.empty() && expiry_.begin()->first <= now_ms) {
    const ClientId client = expiry_.begin()->second;
    expiry_.erase(expiry_.begin());
    Expire(client, now_ms, out);
  }
  if (reclaiming_ && now_ms >= reclaim_end_ms_) {
    reclaiming_ = false;
    std::vector<uint64_t> queued;
    for (const auto& [gfid, file] : files_) {
      if (!file.waiters.empty()) queued.push_back(gfid);
    }
    std::sort(queued.begin(), queued.end());
    for (uint64_t gfid : queued) Advance(gfid, now_ms, out);
  }
  std::vector<uint64_t> due;
  while (!revoke_due_.empty() && revoke_due_.begin()->first <= now_ms) {
    due.push_back(revoke_due_.begin()->second);
    revoke_due_.erase(revoke_due_.begin());
  }
  for (uint64_t gfid : due) Advance(gfid, now_ms, out);
}

void StateMachine::Expire(ClientId client, uint64_t now_ms, Actions* out) {
  auto it = sessions_.find(client);
  const std::vector<uint64_t> gfids = SortedFiles(it->second);
  sessions_.erase(it);
  counters_.expiries++;
  out->push_back({.kind = Action::kSessionExpired, .client = client});
  for (uint64_t gfid : gfids) {
    File& file = files_.at(gfid);
    // A lost WRITE lease may have changed the file after its last hand-off.
    if (HeldMode(client, gfid) == Mode::kWrite) file.handoff.clear();
    std::erase_if(file.holders, [client](const Holder& h) { return h.client == client; });
    std::erase_if(file.waiters, [client](const Waiter& w) { return w.client == client; });
    Advance(gfid, now_ms, out);
  }
}

uint64_t StateMachine::NextDeadline() const {
  uint64_t deadline = kNoDeadline;
  if (!expiry_.empty()) deadline = expiry_.begin()->first;
  if (!revoke_due_.empty()) deadline = std::min(deadline, revoke_due_.begin()->first);
  if (reclaiming_) deadline = std::min(deadline, reclaim_end_ms_);
  return deadline;
}

// --- Queries ---

Mode StateMachine::mode(uint64_t gfid) const {
  auto it = files_.find(gfid);
  if (it == files_.end()) return Mode::kNone;
  Mode strongest = Mode::kNone;
  for (const Holder& holder : it->second.holders) strongest = std::max(strongest, holder.mode);
  return strongest;
}

Mode StateMachine::HeldMode(ClientId client, uint64_t gfid) const {
  auto it = files_.find(gfid);
  if (it == files_.end()) return Mode::kNone;
  for (const Holder& holder : it->second.holders) {
    if (holder.client == client) return holder.mode;
  }
  return Mode::kNone;
}

uint64_t StateMachine::HeldToken(ClientId client, uint64_t gfid) const {
  auto it = files_.find(gfid);
  if (it == files_.end()) return 0;
  for (const Holder& holder : it->second.holders) {
    if (holder.client == client) return holder.token;
  }
  return 0;
}

std::vector<ClientId> StateMachine::holders(uint64_t gfid) const {
  std::vector<ClientId> clients;
  auto it = files_.find(gfid);
  if (it == files_.end()) return clients;
  for (const Holder& holder : it->second.holders) clients.push_back(holder.client);
  std::sort(clients.begin(), clients.end());
  return clients;
}

size_t StateMachine::queue_length(uint64_t gfid) const {
  auto it = files_.find(gfid);
  return it == files_.end() ? 0 : it->second.waiters.size();
}

std::vector<WaitingFile> StateMachine::Waiting(uint64_t now_ms, size_t limit) const {
  const auto since = [now_ms](uint64_t t) { return now_ms > t ? now_ms - t : 0; };
  std::unordered_map<uint64_t, uint64_t> due;  // by gfid
  for (const auto& [due_ms, gfid] : revoke_due_) due.emplace(gfid, due_ms);
  std::vector<WaitingFile> waiting;
  for (const auto& [gfid, file] : files_) {
    if (file.waiters.empty()) continue;
    WaitingFile w{.gfid = gfid};
    if (auto it = due.find(gfid); it != due.end()) w.revoke_in_ms = int64_t(it->second - now_ms);
    for (const Holder& h : file.holders) {
      w.holders.push_back({h.client, h.mode, since(h.granted_ms), h.revoke_id, h.revoke_to,
                           h.revoke_id != 0 ? since(h.revoked_ms) : 0, h.linger_ms});
    }
    for (const Waiter& q : file.waiters) {
      w.waiters.push_back({q.client, q.request_id, q.mode, q.upgrade, since(q.asked_ms)});
    }
    waiting.push_back(std::move(w));
  }
  std::sort(waiting.begin(), waiting.end(), [](const WaitingFile& a, const WaitingFile& b) {
    return a.waiters.front().waited_ms > b.waiters.front().waited_ms;
  });
  if (waiting.size() > limit) waiting.resize(limit);
  return waiting;
}

size_t StateMachine::lease_count() const {
  size_t count = 0;
  for (const auto& [gfid, file] : files_) count += file.holders.size();
  return count;
}

}  // namespace dfuse::lease
