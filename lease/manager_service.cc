#include "lease/manager_service.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "lease/lease_mode_proto.h"
#include "lease/limits.h"
#include "lease/state_machine.h"
#include "proto/lease.grpc.pb.h"
#include "util/stats.h"

namespace dfuse::lease {

namespace {

using Clock = std::chrono::steady_clock;
using Actions = StateMachine::Actions;
using ServerStream = grpc::ServerReaderWriter<proto::ManagerMessage, proto::ClientMessage>;

}  // namespace

class ManagerService final : public proto::LeaseManager::Service {
 public:
  explicit ManagerService(const ManagerOptions& options);
  ~ManagerService() override;

  grpc::Status Session(grpc::ServerContext* ctx, ServerStream* rw) override;

  nlohmann::json Stats() const;
  void Activate(uint64_t epoch);
  // Files waited on, longest first, are listed up to this many.
  static constexpr size_t kFilesInState = 64;
  void SetLeader(const std::string& address);

 private:
  // One session stream. Its writer thread sends `out` in order; everything
  // but `ctx` and `rw` is guarded by mu_.
  struct Stream {
    grpc::ServerContext* ctx;
    ServerStream* rw;
    ClientId client = 0;
    bool attached = false;  // streams_[client] == this
    bool closing = false;   // the writer stops
    bool writing = false;   // a thread is in rw->Write (one at a time)
    std::deque<proto::ManagerMessage> out;
    std::condition_variable cv;
  };

  uint64_t NowMs() const;
  void WriteLoop(Stream* s);
  // Queues msg on s; its writer thread sends it, unless it is for the
  // stream whose message is being handled, whose session thread sends the
  // replies itself (SendQueued) without a hand-off.
  void Send(Stream* s, proto::ManagerMessage msg);
  // Writes s's queue from the calling thread unless another thread is
  // writing to s (which then sends the rest). Under mu_, released around
  // each Write.
  void SendQueued(Stream* s, std::unique_lock<std::mutex>& l);
  // Pops s's first queued message and writes it with mu_ released (one
  // writer at a time: s->writing); a failed write cancels the stream.
  void WriteFront(Stream* s, std::unique_lock<std::mutex>& l);
  void Attach(Stream* s, const proto::Hello& hello);
  void Detach(Stream* s);
  void Handle(Stream* s, const proto::ClientMessage& msg);
  void Dispatch(const Actions& actions);
  void SendError(Stream* s, int code, const std::string& message, uint64_t request_id);
  // Whether `identity` may speak for `client`: a live session belongs to the
  // identity that opened it, and an identity opens at most
  // max_sessions_per_client. Records the claim and returns 0, or EPERM or
  // EUSERS with a one-line *why. Requires mu_.
  int Claim(ClientId client, const std::string& identity, std::string* why);
  // Who waits for what: each stream's send queue and the files waited on,
  // with their holders, waiters and unanswered revokes. Requires mu_.
  nlohmann::json State() const;
  // Acquires of `client` waiting for their grant. Requires mu_.
  size_t PendingAcquires(ClientId client) const;
  // The ack's hand-off if the manager may pass it on: with a fencing key,
  // only with storage's proof for the holder's token. Requires mu_.
  std::string CheckedHandoff(ClientId client, const proto::RevokeAck& ack);
  void TimerLoop();

  const ManagerOptions options_;
  const Clock::time_point start_ = Clock::now();

  mutable std::mutex mu_;
  uint64_t reclaim_end_ms_ = 0;       // while sm_->reclaiming()
  uint64_t epoch_ = 0;                // 0 while standby
  uint64_t handoffs_refused_ = 0;     // acks whose hand-off storage had not proved
  std::string leader_;                // while standby: the active manager's address, if known
  std::unique_ptr<StateMachine> sm_;  // null while standby
  std::unordered_map<ClientId, Stream*> streams_;  // the attached stream of each client
  Stream* handling_ = nullptr;  // whose message Handle is applying (its thread sends)
  // The certificate identity (util/tls.h) that opened each live session;
  // "" for streams in plain text.
  std::unordered_map<ClientId, std::string> owners_;
  // When each pending Acquire and outstanding revoke started, for latencies.
  std::map<std::pair<ClientId, uint64_t>, Clock::time_point> acquires_;  // (client, request_id)
  std::unordered_map<uint64_t, std::pair<ClientId, Clock::time_point>> revokes_;  // revoke_id
  bool stopping_ = false;
  std::condition_variable timer_cv_;  // NextDeadline() may have moved, or stopping_
  // What the timer thread sleeps until (kNoDeadline: no deadline, or it is
  // awake): a message wakes it only to move that earlier.
  uint64_t timer_sleeps_until_ = 0;
  std::thread timer_;

  StatsRegistry stats_;
  Latency* acquire_latency_;
  Latency* revoke_latency_;
};

ManagerService::ManagerService(const ManagerOptions& options)
    : options_(options),
      acquire_latency_(stats_.GetLatency("lease.acquire_to_grant")),
      revoke_latency_(stats_.GetLatency("lease.revoke_to_ack")) {
  if (!options.standby) Activate(options.epoch);
  timer_ = std::thread([this] { TimerLoop(); });
}

void ManagerService::Activate(uint64_t epoch) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (sm_) return;
    epoch_ = epoch;
    leader_.clear();
    sm_ = std::make_unique<StateMachine>(Options{.epoch = epoch,
                                                 .term_ms = options_.term_ms,
                                                 .min_hold_ms = options_.min_hold_ms,
                                                 .max_hold_ms = options_.max_hold_ms});
    // Epoch 1 has no predecessor whose clients could hold leases: a window
    // would only hold up the first grants for nothing. Epochs only grow
    // (etcd, --state-dir, the wall clock), so any later one opens it.
    if (options_.reclaim_ms > 0 && epoch > 1) {
      const uint64_t now = NowMs();
      sm_->BeginReclaim(now, options_.reclaim_ms);
      reclaim_end_ms_ = now + options_.reclaim_ms;
    }
  }
  timer_cv_.notify_one();
}

void ManagerService::SetLeader(const std::string& address) {
  std::lock_guard<std::mutex> l(mu_);
  leader_ = address;
}

ManagerService::~ManagerService() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  timer_cv_.notify_one();
  timer_.join();
}

uint64_t ManagerService::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count();
}

grpc::Status ManagerService::Session(grpc::ServerContext* ctx, ServerStream* rw) {
  proto::ClientMessage msg;
  if (!rw->Read(&msg)) return grpc::Status::OK;  // gone before saying hello
  if (!msg.has_hello() || msg.hello().client_id() == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message must be a Hello with a nonzero client_id");
  }
  {
    std::unique_lock<std::mutex> l(mu_);
    if (!sm_) {
      // A standby: send the client on to the leader (or to try again).
      proto::ManagerMessage refusal;
      proto::Error* e = refusal.mutable_error();
      e->set_code(EAGAIN);
      e->set_message(leader_.empty() ? "not the leader (no leader elected yet)"
                                     : "not the leader; the active lease manager is " + leader_);
      e->set_leader(leader_);
      l.unlock();
      rw->Write(refusal);
      return grpc::Status::OK;
    }
    std::string why;
    if (const int refused = Claim(msg.hello().client_id(), PeerIdentity(*ctx), &why)) {
      proto::ManagerMessage refusal;
      refusal.mutable_error()->set_code(refused);
      refusal.mutable_error()->set_message(why);
      l.unlock();
      spdlog::warn("client {:x}: {}", msg.hello().client_id(), why);
      rw->Write(refusal);
      return grpc::Status::OK;
    }
  }
  Stream s{.ctx = ctx, .rw = rw};
  std::thread writer([this, &s] { WriteLoop(&s); });
  {
    std::lock_guard<std::mutex> l(mu_);
    Attach(&s, msg.hello());
  }
  timer_cv_.notify_one();
  while (rw->Read(&msg)) {
    bool sooner;
    {
      std::unique_lock<std::mutex> l(mu_);
      handling_ = &s;
      Handle(&s, msg);
      handling_ = nullptr;
      SendQueued(&s, l);
      sooner = sm_ && sm_->NextDeadline() < timer_sleeps_until_;
    }
    // Most messages move no deadline earlier (a grant, a heartbeat): waking
    // the timer for each would cost the reply a context switch.
    if (sooner) timer_cv_.notify_one();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    Detach(&s);
    s.closing = true;
  }
  s.cv.notify_one();
  timer_cv_.notify_one();
  writer.join();
  return grpc::Status::OK;
}

void ManagerService::WriteLoop(Stream* s) {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    s->cv.wait(l, [s] { return (!s->out.empty() && !s->writing) || s->closing; });
    if (s->closing) return;  // the stream is over: nobody would read the rest
    WriteFront(s, l);
  }
}

void ManagerService::SendQueued(Stream* s, std::unique_lock<std::mutex>& l) {
  while (!s->out.empty() && !s->writing && !s->closing) WriteFront(s, l);
  if (!s->out.empty()) s->cv.notify_one();
}

void ManagerService::WriteFront(Stream* s, std::unique_lock<std::mutex>& l) {
  proto::ManagerMessage msg = std::move(s->out.front());
  s->out.pop_front();
  s->writing = true;
  l.unlock();
  const bool ok = s->rw->Write(msg);
  l.lock();
  s->writing = false;
  if (!ok) {
    // The client is gone; make the reader notice too.
    s->ctx->TryCancel();
    s->out.clear();
  }
}

void ManagerService::Send(Stream* s, proto::ManagerMessage msg) {
  s->out.push_back(std::move(msg));
  if (s != handling_) s->cv.notify_one();
}

void ManagerService::Attach(Stream* s, const proto::Hello& hello) {
  const ClientId client = hello.client_id();
  const uint64_t now = NowMs();
  if (auto it = streams_.find(client); it != streams_.end()) {
    // The client reconnected before its old stream broke here; the old one
    // no longer speaks for the session.
    it->second->attached = false;
    it->second->ctx->TryCancel();
  }
  streams_[client] = s;
  s->client = client;
  s->attached = true;

  Actions actions;
  const bool resumed = sm_->OpenSession(client, now, &actions, hello.lingers());
  proto::ManagerMessage msg;
  proto::Welcome* welcome = msg.mutable_welcome();
  welcome->set_epoch(epoch_);
  welcome->set_term_ms(options_.term_ms);
  welcome->set_resumed(resumed);
  if (sm_->reclaiming() && now < reclaim_end_ms_)
    welcome->set_reclaim_window_ms(reclaim_end_ms_ - now);
  // A resumed session's leases are already known; reclaim is only for
  // leases held under a previous manager.
  int refused = 0;
  if (!resumed) {
    for (const proto::HeldLease& held : hello.reclaim()) {
      const Status st =
          sm_->Reclaim(client, held.gfid(), FromProto(held.mode()), held.token(), now);
      if (st == Status::kOk) {
        welcome->add_reclaimed(held.gfid());
      } else {
        refused++;
      }
    }
  }
  spdlog::info("client {:x} ({}) {}, {} leases reclaimed, {} refused", client, hello.name(),
               resumed ? "resumed its session" : "opened a session", welcome->reclaimed_size(),
               refused);
  Send(s, std::move(msg));
  Dispatch(actions);  // revokes re-sent on resume go after the Welcome
}

void ManagerService::Detach(Stream* s) {
  if (!s->attached) return;
  s->attached = false;
  streams_.erase(s->client);
  std::erase_if(acquires_, [s](const auto& e) { return e.first.first == s->client; });
  Actions actions;
  sm_->ClientGone(s->client, NowMs(), &actions);
  Dispatch(actions);
  spdlog::info("client {:x} disconnected", s->client);
}

void ManagerService::Handle(Stream* s, const proto::ClientMessage& msg) {
  if (!s->attached) return;  // superseded by a newer stream of the same client
  const ClientId client = s->client;
  const uint64_t now = NowMs();
  Actions actions;
  Status st = Status::kOk;
  switch (msg.msg_case()) {
    case proto::ClientMessage::kAcquire: {
      const proto::Acquire& a = msg.acquire();
      if (options_.max_pending_acquires > 0 &&
          PendingAcquires(client) >= options_.max_pending_acquires) {
        SendError(s, EAGAIN, "too many Acquires waiting for a grant", a.request_id());
        break;
      }
      const auto key = std::make_pair(client, a.request_id());
      acquires_[key] = Clock::now();
      const ByteRange range{a.range().start(), a.range().end()};
      st = sm_->Acquire(client, a.request_id(), a.gfid(), FromProto(a.mode()), range, now, &actions,
                        a.known_version());
      if (st != Status::kOk) acquires_.erase(key);
      if (st == Status::kInvalid) SendError(s, EINVAL, "invalid Acquire", a.request_id());
      break;
    }
    case proto::ClientMessage::kRelease:
      st = sm_->Release(client, msg.release().gfid(), now, &actions);
      break;
    case proto::ClientMessage::kRevokeAck: {
      const proto::RevokeAck& ack = msg.revoke_ack();
      st = sm_->RevokeAck(client, ack.gfid(), ack.revoke_id(), FromProto(ack.mode()), now, &actions,
                          CheckedHandoff(client, ack));
      // The agent acks every revoke it is sent, so this also forgets the
      // revokes that a release or an upgrade made moot.
      auto it = revokes_.find(ack.revoke_id());
      if (it != revokes_.end() && it->second.first == client) {
        if (st == Status::kOk) revoke_latency_->Record(Clock::now() - it->second.second);
        revokes_.erase(it);
      }
      if (st == Status::kInvalid)
        SendError(s, EINVAL, "RevokeAck keeps more than the revoke allows", 0);
      break;
    }
    case proto::ClientMessage::kHeartbeat: {
      st = sm_->Heartbeat(client, now);
      if (st == Status::kOk) {
        proto::ManagerMessage reply;
        reply.mutable_heartbeat_ack()->set_seq(msg.heartbeat().seq());
        Send(s, std::move(reply));
      }
      break;
    }
    case proto::ClientMessage::kHello:
      SendError(s, EPROTO, "Hello after the session started", 0);
      break;
    case proto::ClientMessage::MSG_NOT_SET:
      SendError(s, EPROTO, "empty ClientMessage", 0);
      break;
  }
  if (st == Status::kNoSession) {
    // The session expired while this stream stayed open; say so again in
    // case the first notice crossed the client's own messages.
    proto::ManagerMessage reply;
    reply.mutable_session_expired();
    Send(s, std::move(reply));
  }
  Dispatch(actions);
}

int ManagerService::Claim(ClientId client, const std::string& identity, std::string* why) {
  auto it = owners_.find(client);
  if (it != owners_.end() && sm_->has_session(client)) {
    if (it->second == identity) return 0;  // resuming its own session
    *why = "client id " + std::to_string(client) + " belongs to another client's session";
    return EPERM;
  }
  const size_t most = options_.max_sessions_per_client;
  if (!identity.empty() && most > 0) {
    const size_t open = std::count_if(owners_.begin(), owners_.end(), [&](const auto& e) {
      return e.second == identity && sm_->has_session(e.first);
    });
    if (open >= most) {
      *why = identity + " already has " + std::to_string(open) +
             " sessions, the most one client may open (--max-sessions-per-client)";
      return EUSERS;
    }
  }
  owners_[client] = identity;
  return 0;
}

size_t ManagerService::PendingAcquires(ClientId client) const {
  // acquires_ is ordered by (client, request id).
  auto first = acquires_.lower_bound({client, 0});
  auto last = acquires_.lower_bound({client + 1, 0});
  return std::distance(first, last);
}

void ManagerService::SendError(Stream* s, int code, const std::string& message,
                               uint64_t request_id) {
  spdlog::warn("client {:x}: {}", s->client, message);
  proto::ManagerMessage msg;
  proto::Error* e = msg.mutable_error();
  e->set_code(code);
  e->set_message(message);
  e->set_request_id(request_id);
  Send(s, std::move(msg));
}

void ManagerService::Dispatch(const Actions& actions) {
  const Clock::time_point now = Clock::now();
  for (const Action& a : actions) {
    proto::ManagerMessage msg;
    switch (a.kind) {
      case Action::kGrant: {
        if (auto it = acquires_.find({a.client, a.request_id}); it != acquires_.end()) {
          acquire_latency_->Record(now - it->second);
          acquires_.erase(it);
        }
        proto::Grant* g = msg.mutable_grant();
        g->set_request_id(a.request_id);
        g->set_gfid(a.gfid);
        g->set_mode(ToProto(a.mode));
        g->set_token(a.token);
        g->set_unchanged(a.unchanged);
        g->set_handoff(a.handoff);
        g->set_version(a.version);
        for (const std::string& h : a.since) g->add_since(h);
        g->set_since_known(a.since_known);
        if (options_.fencing_key && a.token != 0) {
          const auto owner = owners_.find(a.client);
          g->set_token_proof(options_.fencing_key->Prove(
              a.gfid, a.token, owner == owners_.end() ? "" : owner->second));
        }
        g->mutable_range()->set_start(a.range.start);
        g->mutable_range()->set_end(a.range.end);
        break;
      }
      case Action::kRevoke: {
        revokes_.try_emplace(a.revoke_id, a.client, now);  // a re-sent revoke keeps its start
        proto::Revoke* r = msg.mutable_revoke();
        r->set_gfid(a.gfid);
        r->set_revoke_id(a.revoke_id);
        r->set_to_mode(ToProto(a.mode));
        r->set_linger_ms(static_cast<uint32_t>(a.linger_ms));
        break;
      }
      case Action::kSessionExpired:
        spdlog::warn("client {:x}: session expired", a.client);
        std::erase_if(acquires_, [&a](const auto& e) { return e.first.first == a.client; });
        std::erase_if(revokes_, [&a](const auto& e) { return e.second.first == a.client; });
        owners_.erase(a.client);
        msg.mutable_session_expired();
        break;
    }
    // The state machine never addresses a disconnected client except to
    // expire it, and then there is nobody to tell.
    if (auto it = streams_.find(a.client); it != streams_.end()) Send(it->second, std::move(msg));
  }
}

void ManagerService::TimerLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    if (!sm_) {
      timer_cv_.wait(l);  // until Activate
      continue;
    }
    const uint64_t deadline = sm_->NextDeadline();
    if (deadline == kNoDeadline) {
      timer_sleeps_until_ = kNoDeadline;
      timer_cv_.wait(l);
      timer_sleeps_until_ = 0;
      continue;
    }
    const uint64_t now = NowMs();
    if (now < deadline) {
      timer_sleeps_until_ = deadline;
      timer_cv_.wait_until(l, start_ + std::chrono::milliseconds(deadline));
      timer_sleeps_until_ = 0;
      continue;
    }
    Actions actions;
    sm_->Tick(now, &actions);
    Dispatch(actions);
  }
}

std::string ManagerService::CheckedHandoff(ClientId client, const proto::RevokeAck& ack) {
  if (ack.handoff().empty() || !options_.fencing_key) return ack.handoff();
  // Storage proved the attributes to the token of the lease they were
  // written under: a client can hand over nothing storage did not say.
  const uint64_t token = sm_->HeldToken(client, ack.gfid());
  if (token != 0 &&
      options_.fencing_key->VerifyHandoff(ack.gfid(), token, ack.handoff(), ack.handoff_proof())) {
    return ack.handoff();
  }
  handoffs_refused_++;
  spdlog::warn("client {:x} handed over attributes of {:#x} without storage's proof", client,
               ack.gfid());
  return "";
}

nlohmann::json ManagerService::Stats() const {
  nlohmann::json j = stats_.ToJson();
  std::unique_lock<std::mutex> l = LockForProbe(mu_);
  if (!l.owns_lock()) {
    j["lease"] = {{"error", "the manager's lock is held"}};
    return j;
  }
  if (!sm_) {
    j["lease"] = {{"active", false}, {"epoch", 0}, {"leader", leader_}};
    return j;
  }
  const Counters& c = sm_->counters();
  j["lease"] = {{"active", true},
                {"epoch", epoch_},
                {"leader", ""},
                {"grants", c.grants},
                {"revokes", c.revokes},
                {"expiries", c.expiries},
                {"reclaims", c.reclaims},
                {"handoffs", c.handoffs},
                {"since_known", c.since_known},
                {"since_unknown", c.since_unknown},
                {"since_before_log", c.since_before_log},
                {"since_not_handed", c.since_not_handed},
                {"handoffs_refused", handoffs_refused_},
                {"sessions", sm_->session_count()},
                {"connected", streams_.size()},
                {"leases", sm_->lease_count()},
                {"reclaiming", sm_->reclaiming()}};
  j["state"] = State();
  return j;
}

nlohmann::json ManagerService::State() const {
  const auto hex = [](uint64_t v) { return fmt::format("{:x}", v); };
  nlohmann::json streams = nlohmann::json::array();
  for (const auto& [client, s] : streams_) {
    streams.push_back({{"client", hex(client)},
                       {"messages_queued", s->out.size()},
                       {"writing", s->writing},
                       {"closing", s->closing}});
  }
  nlohmann::json files = nlohmann::json::array();
  for (const WaitingFile& w : sm_->Waiting(NowMs(), kFilesInState)) {
    nlohmann::json holders = nlohmann::json::array();
    for (const WaitingFile::Holder& h : w.holders) {
      nlohmann::json j = {
          {"client", hex(h.client)}, {"mode", ToString(h.mode)}, {"held_ms", h.held_ms}};
      if (h.revoke_id != 0) {
        j["revoke"] = {{"id", h.revoke_id},
                       {"to", ToString(h.revoke_to)},
                       {"age_ms", h.revoke_age_ms},
                       {"linger_ms", h.linger_ms}};
      }
      holders.push_back(std::move(j));
    }
    nlohmann::json waiters = nlohmann::json::array();
    for (const WaitingFile::Waiter& q : w.waiters) {
      waiters.push_back({{"client", hex(q.client)},
                         {"request_id", q.request_id},
                         {"mode", ToString(q.mode)},
                         {"upgrade", q.upgrade},
                         {"waited_ms", q.waited_ms}});
    }
    files.push_back({{"gfid", hex(w.gfid)},
                     {"holders", std::move(holders)},
                     {"waiters", std::move(waiters)},
                     {"revoke_in_ms", w.revoke_in_ms}});
  }
  return {{"streams", std::move(streams)},
          {"files_waiting", std::move(files)},
          {"timer_sleeps_until_ms", timer_sleeps_until_},
          {"now_ms", NowMs()}};
}

// --- ManagerServer ---

ManagerServer::ManagerServer() = default;

ManagerServer::~ManagerServer() { Shutdown(); }

std::unique_ptr<ManagerServer> ManagerServer::Start(const ManagerOptions& options,
                                                    std::string* error) {
  if (!options.standby && (options.epoch == 0 || options.epoch >= (uint64_t{1} << 24))) {
    *error = "epoch must be in 1.." + std::to_string((uint64_t{1} << 24) - 1);
    return nullptr;
  }
  if (options.term_ms == 0) {
    *error = "the lease term must be positive";
    return nullptr;
  }
  const auto credentials = ServerCredentials(options.tls, options.listen, error);
  if (!credentials) return nullptr;
  std::unique_ptr<ManagerServer> s(new ManagerServer());
  s->service_ = std::make_unique<ManagerService>(options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  // gRPC sets SO_REUSEPORT by default: a second manager on a busy port
  // would silently share it instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxLeaseMessageBytes);
  builder.SetMaxSendMessageSize(kMaxLeaseMessageBytes);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->server_.reset();
    *error = "cannot listen on " + options.listen;
    return nullptr;
  }
  return s;
}

nlohmann::json ManagerServer::Stats() const { return service_->Stats(); }

void ManagerServer::Activate(uint64_t epoch) { service_->Activate(epoch); }

void ManagerServer::SetLeader(const std::string& address) { service_->SetLeader(address); }

bool ManagerServer::DumpStats(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << Stats().dump(2) << "\n";
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

void ManagerServer::Shutdown() {
  if (!server_) return;
  // Session streams never end by themselves: cancel them now.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

}  // namespace dfuse::lease
