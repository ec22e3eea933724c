#include "lease/agent.h"

#include <algorithm>
#include <cerrno>
#include <random>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "lease/lease_mode_proto.h"
#include "lease/limits.h"

namespace dfuse::lease {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kMinBackoff{20};
constexpr milliseconds kMaxBackoff{500};

uint64_t RandomClientId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) | rd();
  return id;
}

}  // namespace

LeaseAgent::LeaseAgent(const LeaseAgentOptions& options, RevokeHandler handler,
                       StatsRegistry* stats)
    : options_(options),
      client_id_(options.client_id != 0 ? options.client_id : RandomClientId()),
      handler_(std::move(handler)),
      stats_(stats),
      probe_name_(fmt::format("lease_agent.{:x}", client_id_)),
      grants_(stats->GetCounter("lease.grants")),
      revokes_(stats->GetCounter("lease.revokes")),
      revokes_of_nothing_(stats->GetCounter("lease.revokes_of_nothing")),
      requests_(stats->GetCounter("lease.requests")),
      losses_(stats->GetCounter("lease.losses")),
      upgrades_kept_(stats->GetCounter("lease.upgrades_kept")),
      upgrades_stale_(stats->GetCounter("lease.upgrades_stale")),
      kept_on_revoke_(stats->GetCounter("lease.kept_on_revoke")),
      kept_current_(stats->GetCounter("lease.kept_current")),
      kept_refreshed_(stats->GetCounter("lease.kept_refreshed")),
      kept_dropped_(stats->GetCounter("lease.kept_dropped")),
      handoffs_received_(stats->GetCounter("lease.handoffs_received")),
      handoffs_dropped_(stats->GetCounter("lease.handoffs_dropped")),
      handoff_misses_(stats->GetCounter("lease.handoff_misses")),
      reconnects_(stats->GetCounter("lease.reconnects")),
      acquire_latency_(stats->GetLatency("lease.acquire")),
      handler_latency_(stats->GetLatency("lease.revoke_handler")) {
  grpc::ChannelArguments args;
  // A restarted manager's reclaim window is short (a term): reconnect fast.
  // The "min reconnect backoff" is gRPC's minimum connect timeout, what one
  // attempt (TCP, TLS handshake, HTTP/2 settings) may take: a default term,
  // not 50 ms, at which a loaded machine's handshakes never finished and a
  // client waited its whole --connect-timeout without a session; no longer
  // than a term either, so a manager that swallows packets does not keep
  // the next one of a group from being tried.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  args.SetMaxReceiveMessageSize(kMaxLeaseMessageBytes);
  args.SetMaxSendMessageSize(kMaxLeaseMessageBytes);
  for (size_t start = 0; start <= options_.manager.size();) {
    size_t end = options_.manager.find(',', start);
    if (end == std::string::npos) end = options_.manager.size();
    std::string address = options_.manager.substr(start, end - start);
    address.erase(0, address.find_first_not_of(" \t"));
    address.erase(address.find_last_not_of(" \t") + 1);
    if (!address.empty()) addresses_.push_back(std::move(address));
    start = end + 1;
  }
  if (addresses_.empty()) addresses_.push_back(options_.manager);  // fails at Start, clearly
  for (const std::string& address : addresses_) {
    stubs_.push_back(proto::LeaseManager::NewStub(
        grpc::CreateCustomChannel(address, options_.credentials, args)));
  }
  stats_->SetProbe(probe_name_, [this] { return State(); });
}

LeaseAgent::~LeaseAgent() {
  stats_->RemoveProbe(probe_name_);
  Shutdown();
}

int LeaseAgent::Start(milliseconds timeout, std::string* error) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (started_ || shutdown_) {
      *error = "the lease agent was already started";
      return EINVAL;
    }
    started_ = true;
  }
  spdlog::info("contacting the lease manager at {} (waiting up to {} ms)", options_.manager,
               timeout.count());
  session_thread_ = std::thread([this] { SessionLoop(); });
  timer_thread_ = std::thread([this] { TimerLoop(); });
  std::unique_lock<std::mutex> l(mu_);
  for (int i = 0; i < std::max(options_.revoke_threads, 1); ++i) {
    revoke_threads_.emplace_back([this] { RevokeLoop(); });
  }
  if (cv_.wait_for(l, timeout, [this] { return welcomes_ > 0; })) return 0;
  *error = "cannot reach the lease manager at " + options_.manager + ": " +
           (refusal_.empty() ? "no answer within " + std::to_string(timeout.count()) + " ms"
                             : "refused: " + refusal_);
  l.unlock();
  Shutdown();
  return EIO;
}

void LeaseAgent::Shutdown() {
  {
    std::unique_lock<std::mutex> l(mu_);
    if (shutdown_ && !session_thread_.joinable()) return;
    shutdown_ = true;
    WakeAcquirers();
    if (connected_) {
      // The writer sends what is queued, then half-closes; the manager
      // reads to the end and closes its side, which ends the stream.
      closing_ = true;
      out_cv_.notify_all();
      cv_.wait_for(l, kCloseTimeout, [this] { return ctx_ == nullptr; });
    }
    if (ctx_ != nullptr) ctx_->TryCancel();
  }
  cv_.notify_all();
  timer_cv_.notify_all();
  out_cv_.notify_all();
  jobs_cv_.notify_all();
  if (session_thread_.joinable()) session_thread_.join();
  if (timer_thread_.joinable()) timer_thread_.join();
  for (std::thread& t : revoke_threads_) {
    if (t.joinable()) t.join();
  }
}

// --- The session ---

void LeaseAgent::SessionLoop() {
  milliseconds backoff = kMinBackoff;
  for (;;) {
    uint64_t welcomed_before;
    {
      std::lock_guard<std::mutex> l(mu_);
      welcomed_before = welcomes_;
    }
    const bool went_round = RunStream();
    std::unique_lock<std::mutex> l(mu_);
    if (welcomes_ != welcomed_before) backoff = kMinBackoff;
    if (cv_.wait_for(l, backoff, [this] { return shutdown_; })) return;
    // With several managers, back off only once all of them have been
    // tried: the next one may well be the leader.
    if (went_round) backoff = std::min(backoff * 2, kMaxBackoff);
    reconnects_->Add();
  }
}

bool LeaseAgent::NextAddress(bool welcomed, const std::string& leader) {
  if (addresses_.size() == 1) return true;
  if (welcomed) {
    // The stream broke: the same manager first, it may just have been a blip.
    unwelcomed_tries_ = 0;
    return false;
  }
  unwelcomed_tries_++;
  const auto named = std::find(addresses_.begin(), addresses_.end(), leader);
  if (named != addresses_.end() && static_cast<size_t>(named - addresses_.begin()) != current_) {
    current_ = named - addresses_.begin();
  } else {
    current_ = (current_ + 1) % addresses_.size();
  }
  return unwelcomed_tries_ % addresses_.size() == 0;
}

// One stream, from Hello until it breaks. Returns NextAddress's answer.
bool LeaseAgent::RunStream() {
  grpc::ClientContext ctx;
  // A single manager: wait for it to come (back) instead of failing at once.
  // Several: fail fast on a dead one, so the next is tried.
  ctx.set_wait_for_ready(addresses_.size() == 1);
  proto::LeaseManager::Stub* stub;
  std::string address;
  proto::ClientMessage hello;
  Clock::time_point hello_sent;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shutdown_) return false;
    ctx_ = &ctx;
    stub = stubs_[current_].get();
    address = addresses_[current_];
    proto::Hello* h = hello.mutable_hello();
    h->set_client_id(client_id_);
    h->set_name(options_.name);
    h->set_lingers(options_.lingers);
    // Re-assert what a restarted manager would not know. A grant still
    // queued behind a revoke counts: claiming too much is harmless (it will
    // be revoked), claiming too little is not.
    for (const auto& [gfid, file] : files_) {
      const LeaseMode mode = Claimed(file);
      if (mode == LeaseMode::kNone) continue;
      proto::HeldLease* held = h->add_reclaim();
      held->set_gfid(gfid);
      held->set_mode(ToProto(mode));
      held->set_token(file.queued_mode == LeaseMode::kWrite    ? file.queued_token
                      : file.held == LeaseMode::kWrite         ? file.token
                      : file.revoked_from == LeaseMode::kWrite ? file.revoked_token
                                                               : 0);
    }
  }
  std::unique_ptr<Stream> stream = stub->Session(&ctx);
  if (options_.emulated_rtt.count() > 0) std::this_thread::sleep_for(options_.emulated_rtt);
  hello_sent = Clock::now();
  proto::ManagerMessage msg;
  std::thread writer;
  bool welcomed = false;
  std::string leader;  // named by a standby's refusal
  if (stream->Write(hello) && stream->Read(&msg) && msg.has_error()) {
    // A standby of a highly available group (or a confused manager).
    leader = msg.error().leader();
    spdlog::info("lease manager {}: {}", address, msg.error().message());
    std::lock_guard<std::mutex> l(mu_);
    refusal_ = msg.error().message();
  } else if (msg.has_welcome()) {
    welcomed = true;
    uint64_t generation;
    {
      std::lock_guard<std::mutex> l(mu_);
      OnWelcome(msg.welcome(), hello_sent);
      generation = generation_;
      stream_ = stream.get();
    }
    cv_.notify_all();
    writer = std::thread([this, s = stream.get(), generation] { WriteLoop(s, generation); });
    while (stream->Read(&msg)) {
      std::lock_guard<std::mutex> l(mu_);
      OnMessage(msg);
    }
  }
  {
    std::unique_lock<std::mutex> l(mu_);
    if (connected_) disconnected_since_ = Clock::now();
    connected_ = false;
    WakeAcquirers();  // they now give up after a term
    out_.clear();
    // A caller may still be in Write on this stream (SendQueued).
    if (ctx_ != nullptr && writing_) ctx_->TryCancel();
    cv_.wait(l, [this] { return !writing_; });
    stream_ = nullptr;
  }
  out_cv_.notify_all();
  cv_.notify_all();
  if (writer.joinable()) writer.join();
  const grpc::Status status = stream->Finish();
  std::lock_guard<std::mutex> l(mu_);
  ctx_ = nullptr;
  cv_.notify_all();  // Shutdown waits for the stream to end
  if (!shutdown_ && (welcomed || addresses_.size() == 1)) {
    spdlog::warn("lease session with {} ended: {}", address,
                 status.ok() ? "closed by the manager" : status.error_message());
  }
  return NextAddress(welcomed, leader);
}

void LeaseAgent::WriteLoop(Stream* stream, uint64_t generation) {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    out_cv_.wait(l, [&] {
      return !connected_ || generation_ != generation ||
             ((!out_.empty() || closing_) && !writing_);
    });
    if (!connected_ || generation_ != generation) return;
    if (out_.empty()) {  // closing_, and everything queued is sent
      l.unlock();
      stream->WritesDone();
      return;
    }
    if (Clock::now() < out_.front().due) {
      out_cv_.wait_until(l, out_.front().due);
      continue;
    }
    if (!WriteFront(stream, l)) return;
  }
}

void LeaseAgent::SendQueued(std::unique_lock<std::mutex>& l) {
  const uint64_t generation = generation_;
  Stream* const stream = stream_;
  // Not once closing_: the writer thread may be in WritesDone.
  while (connected_ && generation_ == generation && !writing_ && !closing_ && !out_.empty() &&
         out_.front().due <= Clock::now()) {
    if (!WriteFront(stream, l)) return;
  }
  // Whatever is left (not yet due, or queued behind another thread's
  // Write) is the writer thread's.
  if (!out_.empty()) out_cv_.notify_one();
}

bool LeaseAgent::WriteFront(Stream* stream, std::unique_lock<std::mutex>& l) {
  proto::ClientMessage msg = std::move(out_.front().msg);
  out_.pop_front();
  writing_ = true;
  l.unlock();
  const bool ok = stream->Write(msg);
  l.lock();
  writing_ = false;
  if (!connected_) cv_.notify_all();  // the session waits to end the stream
  if (!ok && ctx_ != nullptr) ctx_->TryCancel();  // the reader notices and reconnects
  return ok;
}

void LeaseAgent::Send(proto::ClientMessage msg) {
  // Lost with the stream otherwise: the Welcome of the next stream re-sends
  // what matters (requests) and the manager re-sends unacked revokes.
  if (!connected_) return;
  out_.push_back({std::move(msg), Clock::now() + options_.emulated_rtt});
  if (!caller_sends_) out_cv_.notify_one();
}

void LeaseAgent::SendAcquire(Request& req) {
  proto::ClientMessage msg;
  proto::Acquire* a = msg.mutable_acquire();
  a->set_request_id(req.id);
  a->set_gfid(req.gfid);
  a->set_mode(ToProto(req.mode));
  a->mutable_range()->set_start(0);
  a->mutable_range()->set_end(UINT64_MAX);
  auto it = files_.find(req.gfid);
  req.known_version = it != files_.end() && it->second.kept ? it->second.kept_version : 0;
  a->set_known_version(req.known_version);
  requests_->Add();
  Send(std::move(msg));
}

void LeaseAgent::OnWelcome(const proto::Welcome& welcome, Clock::time_point hello_sent) {
  term_ = milliseconds(welcome.term_ms());
  margin_ = std::min(options_.drift_margin, term_ / 4);
  if (!welcome.resumed()) {
    // A new session holds only what it reclaimed.
    const std::unordered_set<uint64_t> kept(welcome.reclaimed().begin(), welcome.reclaimed().end());
    for (auto& [gfid, file] : files_) {
      if (Claimed(file) != LeaseMode::kNone && !kept.contains(gfid)) {
        Lose(gfid, file);
      }
    }
  }
  // After the losses: whoever sees the new term trusted sees them counted.
  SetValidUntil(hello_sent + term_ - margin_);
  connected_ = true;
  generation_++;
  welcomes_++;
  heartbeats_.clear();
  next_heartbeat_ = Clock::now() + term_ / 3;
  timer_cv_.notify_one();
  WakeAcquirers();  // waiting for a term no longer
  // Released meanwhile, perhaps after the Hello reclaimed them: the manager
  // must not keep a lease this node no longer has (it would answer the
  // next Acquire with the old grant). Before the requests, which may ask
  // for the same file again.
  for (uint64_t gfid : unsent_releases_) {
    auto it = files_.find(gfid);
    if (it == files_.end() || Claimed(it->second) == LeaseMode::kNone) SendRelease(gfid);
  }
  unsent_releases_.clear();
  // The manager dropped our queued requests with the old stream.
  for (auto& [gfid, file] : files_) {
    if (file.request && !file.request->held_back) SendAcquire(*file.request);
  }
  spdlog::info("lease session with {} (epoch {}) {}; {} leases reclaimed", addresses_[current_],
               welcome.epoch(), welcome.resumed() ? "resumed" : "opened", welcome.reclaimed_size());
}

void LeaseAgent::SetValidUntil(Clock::time_point t) {
  valid_until_ = t;
  trusted_until_.store(t.time_since_epoch().count(), std::memory_order_release);
}

void LeaseAgent::OnMessage(const proto::ManagerMessage& msg) {
  switch (msg.msg_case()) {
    case proto::ManagerMessage::kGrant: {
      const proto::Grant& g = msg.grant();
      grants_->Add();
      File& file = files_[g.gfid()];
      if (g.token() != 0 && !g.token_proof().empty()) {
        file.proofs[g.token()] = g.token_proof();
        if (file.proofs.size() > kProofsKept) file.proofs.erase(file.proofs.begin());
      }
      if (file.kept) {
        // The cache kept across an upgrade or a revoke is current only if
        // no one wrote between; otherwise what they wrote is dropped before
        // the grant applies, or everything if the manager cannot say what.
        file.kept = false;
        // `since` answers the known_version the request named, which must
        // be the kept cache's.
        const bool told = g.since_known() && file.kept_version != 0 && file.request &&
                          file.request->id == g.request_id() &&
                          file.request->known_version == file.kept_version;
        const bool current = g.unchanged() || (told && g.since_size() == 0);
        if (file.kept_for_upgrade) (current ? upgrades_kept_ : upgrades_stale_)->Add();
        if (current) {
          kept_current_->Add();
        } else if (told && options_.refresh_kept) {
          QueueJob(file, {.kind = Job::kRefresh,
                          .gfid = g.gfid(),
                          .since = {g.since().begin(), g.since().end()}});
        } else {
          kept_dropped_->Add();
          QueueJob(file, {.kind = Job::kDrop, .gfid = g.gfid(), .to = LeaseMode::kNone});
        }
      }
      if (file.jobs() == 0) {
        ApplyGrant(file, g);
        return;
      }
      // An earlier revoke (or drop) of this file is still being handled.
      file.grants_queued++;
      file.queued_mode = FromProto(g.mode());
      file.queued_token = g.token();
      NoteClaim();
      QueueJob(file, {.kind = Job::kGrant, .gfid = g.gfid(), .grant = g, .losses = file.losses});
      return;
    }
    case proto::ManagerMessage::kRevoke: {
      const proto::Revoke& r = msg.revoke();
      revokes_->Add();
      File& file = files_[r.gfid()];
      file.handoff_in.clear();  // this node may have changed the file since
      const LeaseMode to = FromProto(r.to_mode());
      if (Claimed(file) == LeaseMode::kNone && file.jobs() == 0) {
        // Released (its Release is on the way: the manager read another
        // node's request first) or lost and dropped already: there is
        // nothing to write back or drop, and the handler is not bothered.
        revokes_of_nothing_->Add();
        SendRevokeAck(r.gfid(), r.revoke_id(), LeaseMode::kNone);
        Forget(r.gfid());
        return;
      }
      // Stop trusting the stronger lease at once, unless a queued grant is
      // still to be applied first (the revoke job lowers it again).
      uint64_t grant = 0;
      if (file.grants_queued == 0 && file.held > to) {
        if (file.held > file.revoked_from) {
          file.revoked_from = file.held;
          file.revoked_token = file.token;
        }
        file.held = to;
        if (to != LeaseMode::kWrite) file.token = 0;
        grant = file.grant;
      }
      file.revokes++;
      QueueJob(file, {.kind = Job::kRevoke,
                      .gfid = r.gfid(),
                      .to = to,
                      .revoke_id = r.revoke_id(),
                      .takes_grant = grant,
                      .linger = std::chrono::milliseconds(r.linger_ms())});
      return;
    }
    case proto::ManagerMessage::kHeartbeatAck: {
      const uint64_t seq = msg.heartbeat_ack().seq();
      while (!heartbeats_.empty() && heartbeats_.front().first < seq) heartbeats_.pop_front();
      if (!heartbeats_.empty() && heartbeats_.front().first == seq) {
        SetValidUntil(std::max(valid_until_, heartbeats_.front().second + term_ - margin_));
        heartbeats_.pop_front();
      }
      return;
    }
    case proto::ManagerMessage::kSessionExpired:
      LoseAll("the manager expired the session");
      if (ctx_ != nullptr) ctx_->TryCancel();  // reconnect: a new Hello opens a new session
      return;
    case proto::ManagerMessage::kError: {
      const proto::Error& e = msg.error();
      spdlog::error("lease manager: {} (errno {})", e.message(), e.code());
      for (auto& [gfid, file] : files_) {
        if (!file.request || file.request->id != e.request_id()) continue;
        file.request->error = e.code() > 0 ? e.code() : EIO;
        Complete(*file.request);
        file.request.reset();
        break;
      }
      return;
    }
    case proto::ManagerMessage::kWelcome:
    case proto::ManagerMessage::MSG_NOT_SET:
      spdlog::error("lease manager sent an unexpected message");
      return;
  }
}

void LeaseAgent::ApplyGrant(File& file, const proto::Grant& grant) {
  file.held = FromProto(grant.mode());
  file.token = grant.token();
  file.grant = grant.request_id();
  file.version = grant.version();
  // Refreshed by the jobs before this grant (or current): a revoke of the
  // lease given up for an upgrade may have marked it kept again since the
  // grant arrived.
  file.kept = false;
  file.handoff_in = grant.handoff();
  if (!file.handoff_in.empty()) handoffs_received_->Add();
  NoteClaim();
  // A grant whose request was abandoned still reflects what the manager
  // records for us, so it is applied all the same.
  if (!file.request || file.request->id != grant.request_id()) return;
  file.request->granted = true;
  file.request->token = grant.token();
  Complete(*file.request);
  file.request.reset();
}

void LeaseAgent::Complete(Request& req) {
  req.done.store(true, std::memory_order_release);
  req.cv.notify_all();
}

void LeaseAgent::WakeAcquirers() {
  for (auto& [gfid, file] : files_) {
    if (file.request) file.request->cv.notify_all();
  }
}

void LeaseAgent::NoteClaim() {
  // In steady state the next heartbeat comes before the term runs out, and
  // the timer is not woken for every grant.
  if (valid_until_ < timer_wake_) timer_cv_.notify_one();
}

void LeaseAgent::Lose(uint64_t gfid, File& file) {
  losses_->Add();
  lost_.fetch_add(1, std::memory_order_release);
  file.held = LeaseMode::kNone;
  file.token = 0;
  file.handoff_in.clear();
  file.losses++;
  file.queued_mode = LeaseMode::kNone;
  file.revoked_from = LeaseMode::kNone;
  file.revoked_token = 0;
  file.revoking_grant = 0;  // lost: nothing is left to use once
  QueueJob(file, {.kind = Job::kDrop, .gfid = gfid, .to = LeaseMode::kNone});
}

void LeaseAgent::LoseAll(const char* why) {
  int lost = 0;
  for (auto& [gfid, file] : files_) {
    if (Claimed(file) == LeaseMode::kNone) continue;
    Lose(gfid, file);
    lost++;
  }
  if (lost > 0) spdlog::warn("{}: dropping {} leases", why, lost);
}

void LeaseAgent::Forget(uint64_t gfid) {
  auto it = files_.find(gfid);
  if (it == files_.end()) return;
  const File& file = it->second;
  if (file.held == LeaseMode::kNone && file.jobs() == 0 && !file.request && !file.kept) {
    files_.erase(it);
  }
}

// --- Timer: heartbeats and expiry ---

LeaseMode LeaseAgent::Claimed(const File& file) {
  return std::max({file.held, file.queued_mode, file.revoked_from});
}

bool LeaseAgent::Holding() const {
  for (const auto& [gfid, file] : files_) {
    if (Claimed(file) != LeaseMode::kNone) return true;
  }
  return false;
}

void LeaseAgent::TimerLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!shutdown_) {
    const Clock::time_point now = Clock::now();
    if (connected_ && now >= next_heartbeat_) {
      proto::ClientMessage msg;
      msg.mutable_heartbeat()->set_seq(++heartbeat_seq_);
      heartbeats_.emplace_back(heartbeat_seq_, now);
      Send(std::move(msg));
      next_heartbeat_ = now + term_ / 3;
    }
    const bool holding = Holding();
    if (holding && now >= valid_until_) {
      LoseAll("no renewal acknowledged within the lease term");
      // Re-establish the session so that both sides agree again.
      if (ctx_ != nullptr) ctx_->TryCancel();
      continue;
    }
    Clock::time_point wake = connected_ ? next_heartbeat_ : Clock::time_point::max();
    if (holding) wake = std::min(wake, valid_until_);
    // Read by NoteClaim only while mu_ is free, i.e. while this wait is on.
    timer_wake_ = wake;
    if (wake == Clock::time_point::max()) {
      timer_cv_.wait(l);
    } else {
      timer_cv_.wait_until(l, wake);
    }
  }
}

// --- Revokes ---

void LeaseAgent::QueueJob(File& file, Job job) {
  const uint64_t gfid = job.gfid;
  file.queue.push_back(std::move(job));
  // A file is in ready_ while it has jobs and no thread runs one of them.
  if (!file.running && file.queue.size() == 1) MakeReady(gfid);
}

void LeaseAgent::MakeReady(uint64_t gfid) {
  ready_.push_back(gfid);
  if (revoke_idle_ >= ready_.size() || shutdown_ || revoke_threads_.size() >= kMaxRevokeThreads) {
    jobs_cv_.notify_one();
    return;
  }
  revoke_threads_.emplace_back([this] { RevokeLoop(); });
}

void LeaseAgent::RevokeLoop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    revoke_idle_++;
    jobs_cv_.wait(l, [this] { return shutdown_ || !ready_.empty(); });
    revoke_idle_--;
    if (shutdown_) return;
    // `file` stays valid: Forget never erases a file with jobs pending, and
    // references into files_ survive its rehashing.
    File& file = files_[ready_.front()];
    ready_.pop_front();
    Job job = std::move(file.queue.front());
    file.queue.pop_front();
    file.running = true;
    if (job.kind == Job::kSend) {
      SendHeldBack(file, job.then_send);
    } else if (job.kind == Job::kRefresh) {
      // The grant it comes before is queued behind it: nothing uses the
      // kept cache until it is applied.
      l.unlock();
      const bool refreshed = options_.refresh_kept(job.gfid, job.since);
      if (!refreshed && handler_)
        handler_(job.gfid, LeaseMode::kNone, std::chrono::milliseconds(0));
      (refreshed ? kept_refreshed_ : kept_dropped_)->Add();
      l.lock();
    } else if (job.kind == Job::kGrant) {
      if (--file.grants_queued == 0) file.queued_mode = LeaseMode::kNone;
      if (job.losses == file.losses) {
        ApplyGrant(file, job.grant);
      } else {
        // The lease was lost after this grant arrived: its waiters ask again.
        if (file.request && file.request->id == job.grant.request_id()) {
          Complete(*file.request);
          file.request.reset();
        }
      }
    } else {
      // A grant queued ahead of this revoke may have been applied since the
      // revoke arrived: once this node has held the lease, what that grant
      // handed over may no longer be the file's.
      file.handoff_in.clear();
      if (file.held > job.to) {
        if (job.kind == Job::kRevoke && file.held > file.revoked_from) {
          file.revoked_from = file.held;
          file.revoked_token = file.token;
        }
        if (job.kind == Job::kRevoke) job.takes_grant = file.grant;
        file.held = job.to;
        if (job.to != LeaseMode::kWrite) file.token = 0;
      }
      // Set when the cache is kept, cleared when a later call drops it.
      // Set before the call: a grant that arrives meanwhile must find it
      // (and refresh what may still be kept).
      const bool keeping = job.keep || (job.kind == Job::kRevoke && job.to == LeaseMode::kNone &&
                                        options_.release_keeping);
      if (keeping) {
        file.kept = true;
        file.kept_for_upgrade = job.keep;
        file.kept_version = file.version;
      } else if (job.to == LeaseMode::kNone) {
        file.kept = false;
      }
      // Only this revoke's handler may hand over with its ack.
      file.handoff_out.clear();
      file.handoff_out_proof.clear();
      file.revoking_grant = job.kind == Job::kRevoke ? job.takes_grant : 0;
      l.unlock();
      bool kept = true;
      if (job.keep) {
        options_.before_upgrade(job.gfid, job.takes_grant);
      } else if (keeping) {
        ScopedLatency timer(handler_latency_);
        kept = options_.release_keeping(job.gfid, job.linger);
      } else if (handler_) {
        ScopedLatency timer(handler_latency_);
        handler_(job.gfid, job.to, job.linger);
      }
      l.lock();
      file.revoking_grant = 0;
      if (keeping && kept && !job.keep) kept_on_revoke_->Add();
      // Dropped after all: a grant that came meanwhile refreshes nothing
      // that is still there, which is harmless.
      if (!kept) file.kept = false;
      if (job.kind == Job::kRevoke) {
        // Handled: what the revoke took is safe to give up even if the ack
        // is lost with the stream.
        if (--file.revokes == 0) {
          file.revoked_from = LeaseMode::kNone;
          file.revoked_token = 0;
        }
        // What the handler made true, even if `held` is lower by now: an
        // upgrade asked for meanwhile lowers it at once, but the READ
        // cache it gives up is only dropped by the job queued behind this
        // one, and the manager must count this node as a reader until the
        // WRITE request that follows that job says otherwise.
        // Written by this thread, as a caller writes its request: the
        // writer thread would cost a wake-up on the way to the next grant.
        caller_sends_ = true;
        SendRevokeAck(job.gfid, job.revoke_id, job.to, std::move(file.handoff_out),
                      std::move(file.handoff_out_proof));
        caller_sends_ = false;
        file.handoff_out.clear();
        file.handoff_out_proof.clear();
        SendQueued(l);  // `file` stays: it is running
      } else if (job.then_send) {
        SendHeldBack(file, job.then_send);
      }
    }
    file.running = false;
    if (!file.queue.empty()) MakeReady(job.gfid);
    Forget(job.gfid);
  }
}

void LeaseAgent::SendHeldBack(File& file, const std::shared_ptr<Request>& req) {
  if (file.request != req) return;  // abandoned or voided
  req->held_back = false;
  SendAcquire(*req);
}

// --- The API ---

std::shared_ptr<LeaseAgent::Request> LeaseAgent::NewRequest(uint64_t gfid, LeaseMode mode) {
  File& file = files_[gfid];
  auto req = std::make_shared<Request>();
  req->id = next_request_id_++;
  req->asked = Clock::now();
  req->gfid = gfid;
  req->mode = mode;
  file.request = req;
  if (file.held == LeaseMode::kRead && mode == LeaseMode::kWrite) {
    file.handoff_in.clear();
    // Upgrade: the manager takes the READ lease back when the request
    // arrives and may let another writer in before granting ours, so the
    // READ cache is dropped first (Algorithm 1 of the paper), or kept out
    // of use until the grant says whether one did (before_upgrade).
    file.held = LeaseMode::kNone;
    req->held_back = true;
    QueueJob(file, {.kind = Job::kDrop,
                    .gfid = gfid,
                    .to = LeaseMode::kNone,
                    .keep = static_cast<bool>(options_.before_upgrade),
                    .takes_grant = file.grant,
                    .then_send = req});
  } else if (file.jobs() > 0) {
    // A revoke or drop of this file is still being handled. The manager may
    // still count us as a READ holder, and would take a WRITE request as an
    // upgrade that frees the file before our handler is done: send the
    // request only after it.
    req->held_back = true;
    QueueJob(file, {.kind = Job::kSend, .gfid = gfid, .then_send = req});
  } else {
    SendAcquire(*req);
  }
  return req;
}

int LeaseAgent::Acquire(uint64_t gfid, LeaseMode mode, uint64_t* token, uint64_t* grant) {
  if (mode == LeaseMode::kNone) return EINVAL;
  std::unique_lock<std::mutex> l(mu_);
  const Clock::time_point start = Clock::now();
  bool asked = false;
  for (;;) {
    if (shutdown_) return EINTR;
    if (!started_) return EIO;
    if (HoldsLocked(gfid, mode, token)) {
      if (grant != nullptr) *grant = files_[gfid].grant;
      break;
    }
    // At most one request per file is outstanding. A weaker one must be
    // answered before asking for more: the manager takes a WRITE request
    // from a READ holder as an upgrade that gives up the READ lease, even
    // one whose grant is still on its way to us.
    std::shared_ptr<Request> req = files_[gfid].request;
    if (!req) {
      // The caller writes its request itself: a hand-off to the writer
      // thread would cost a wake-up on the way to every grant.
      caller_sends_ = true;
      req = NewRequest(gfid, mode);
      caller_sends_ = false;
      SendQueued(l);
    }
    asked = true;
    req->waiters++;
    int err = 0;
    bool polled = false;
    for (;;) {
      if (shutdown_) {
        err = EINTR;
        break;
      }
      if (req->done) break;
      if (connected_ && !polled && acquire_quick_ && options_.acquire_spin.count() > 0) {
        // A session change or Shutdown during the poll is seen after it.
        polled = true;
        l.unlock();
        const Clock::time_point until = Clock::now() + options_.acquire_spin;
        while (!req->done.load(std::memory_order_acquire) && Clock::now() < until) {
          std::this_thread::yield();
        }
        l.lock();
        continue;
      }
      if (!connected_) {
        const Clock::time_point give_up = disconnected_since_ + term_;
        if (Clock::now() >= give_up) {
          err = EIO;
          break;
        }
        req->cv.wait_until(l, give_up);
      } else {
        req->cv.wait(l);
      }
    }
    req->waiters--;
    if (err == 0 && req->error != 0) err = req->error;
    if (err != 0) {
      if (req->waiters == 0 && !req->done) {
        files_[gfid].request.reset();
        Forget(gfid);
      }
      return err;
    }
    // Granted while the session was trusted: the lease is ours, even if a
    // revoke has already followed (the caller checks Holds under its lock).
    if (req->granted && req->mode >= mode && Clock::now() < valid_until_) {
      if (token != nullptr) *token = req->token;
      if (grant != nullptr) *grant = req->id;
      break;
    }
  }
  if (asked) {
    const Clock::duration took = Clock::now() - start;
    acquire_latency_->Record(took);
    acquire_quick_ = took <= options_.acquire_spin;
  }
  return 0;
}

bool LeaseAgent::Holds(uint64_t gfid, LeaseMode mode, uint64_t* token) {
  std::lock_guard<std::mutex> l(mu_);
  return HoldsLocked(gfid, mode, token);
}

uint64_t LeaseAgent::RevokingGrant(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  return it == files_.end() ? 0 : it->second.revoking_grant;
}

uint64_t LeaseAgent::RevokedWriteToken(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end() || it->second.revokes == 0) return 0;
  return it->second.revoked_from == LeaseMode::kWrite ? it->second.revoked_token : 0;
}

bool LeaseAgent::HoldsLocked(uint64_t gfid, LeaseMode mode, uint64_t* token) {
  auto it = files_.find(gfid);
  if (it == files_.end() || it->second.held < mode || Clock::now() >= valid_until_) return false;
  if (token != nullptr) *token = it->second.token;
  return true;
}

std::string LeaseAgent::Proof(uint64_t gfid, uint64_t token) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end()) return "";
  auto proof = it->second.proofs.find(token);
  return proof == it->second.proofs.end() ? "" : proof->second;
}

void LeaseAgent::Release(uint64_t gfid) {
  std::unique_lock<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end()) return;
  File& file = it->second;
  // The node keeps nothing of the file once it gives the lease back.
  file.kept = false;
  if (Claimed(file) == LeaseMode::kNone) {
    Forget(gfid);
    return;
  }
  file.held = LeaseMode::kNone;
  file.token = 0;
  file.handoff_in.clear();
  file.queued_mode = LeaseMode::kNone;
  file.revoked_from = LeaseMode::kNone;
  file.revoked_token = 0;
  file.losses++;  // a grant still queued is released too
  Forget(gfid);
  if (!connected_) {
    unsent_releases_.push_back(gfid);
    return;
  }
  // Written by the caller, as an Acquire is: the writer thread's Write
  // would otherwise be under way when this caller's next Acquire comes.
  caller_sends_ = true;
  SendRelease(gfid);
  caller_sends_ = false;
  SendQueued(l);
}

void LeaseAgent::SendRevokeAck(uint64_t gfid, uint64_t revoke_id, LeaseMode kept,
                               std::string handoff, std::string proof) {
  proto::ClientMessage msg;
  proto::RevokeAck* ack = msg.mutable_revoke_ack();
  ack->set_gfid(gfid);
  ack->set_revoke_id(revoke_id);
  ack->set_mode(ToProto(kept));
  ack->set_handoff(std::move(handoff));
  ack->set_handoff_proof(std::move(proof));
  Send(std::move(msg));
}

void LeaseAgent::HandOff(uint64_t gfid, std::string attrs, std::string proof) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end() || it->second.revokes == 0) return;  // no revoke to ack
  it->second.handoff_out = std::move(attrs);
  it->second.handoff_out_proof = std::move(proof);
}

bool LeaseAgent::Handoff(uint64_t gfid, std::string* attrs) {
  std::lock_guard<std::mutex> l(mu_);
  if (!HoldsLocked(gfid, LeaseMode::kRead, nullptr)) return false;
  auto it = files_.find(gfid);
  if (it == files_.end() || it->second.handoff_in.empty()) {
    handoff_misses_->Add();
    return false;
  }
  *attrs = it->second.handoff_in;
  return true;
}

void LeaseAgent::DropHandoff(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end() || it->second.handoff_in.empty()) return;
  it->second.handoff_in.clear();
  handoffs_dropped_->Add();
}

nlohmann::json LeaseAgent::State() {
  std::unique_lock<std::mutex> l = LockForProbe(mu_);
  if (!l.owns_lock()) return {{"error", "the agent's lock is held"}};
  const Clock::time_point now = Clock::now();
  const auto ms = [](Clock::duration d) {
    return std::chrono::duration_cast<milliseconds>(d).count();
  };
  static constexpr const char* kJobKinds[] = {"revoke", "drop", "refresh", "grant", "send"};
  nlohmann::json files = nlohmann::json::array();
  for (const auto& [gfid, file] : files_) {
    if (!file.request && file.jobs() == 0 && file.revokes == 0) continue;
    nlohmann::json f = {{"gfid", fmt::format("{:x}", gfid)},
                        {"held", ToString(file.held)},
                        {"grant", file.grant},
                        {"revoked_from", ToString(file.revoked_from)},
                        {"revokes", file.revokes},
                        {"grants_queued", file.grants_queued},
                        {"job_running", file.running},
                        {"kept", file.kept}};
    nlohmann::json jobs = nlohmann::json::array();
    for (const Job& job : file.queue) {
      nlohmann::json j = {{"kind", kJobKinds[job.kind]}};
      if (job.kind == Job::kRevoke) j["revoke_id"] = job.revoke_id;
      if (job.kind == Job::kRevoke || job.kind == Job::kDrop) j["to"] = ToString(job.to);
      if (job.kind == Job::kGrant) j["request_id"] = job.grant.request_id();
      if (job.then_send) j["then_send"] = job.then_send->id;
      jobs.push_back(std::move(j));
    }
    f["jobs_queued"] = std::move(jobs);
    if (file.request) {
      const Request& r = *file.request;
      f["request"] = {{"id", r.id},
                      {"mode", ToString(r.mode)},
                      {"held_back", r.held_back},
                      {"done", r.done.load()},
                      {"waiters", r.waiters},
                      {"age_ms", ms(now - r.asked)}};
    }
    files.push_back(std::move(f));
  }
  return {{"client_id", fmt::format("{:x}", client_id_)},
          {"connected", connected_},
          {"generation", generation_},
          {"trusted_for_ms", ms(std::max(valid_until_ - now, Clock::duration::zero()))},
          {"messages_queued", out_.size()},
          {"writing", writing_},
          {"files_ready_for_jobs", ready_.size()},
          {"revoke_threads", revoke_threads_.size()},
          {"revoke_threads_idle", revoke_idle_},
          {"files_known", files_.size()},
          {"files_waiting", std::move(files)}};
}

void LeaseAgent::SendRelease(uint64_t gfid) {
  proto::ClientMessage msg;
  msg.mutable_release()->set_gfid(gfid);
  Send(std::move(msg));
}

}  // namespace dfuse::lease
