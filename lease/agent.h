// The client side of the lease protocol: one session with the lease manager
// per client daemon, shared by all its files (ARCHITECTURE.md section 5).
//
// Threads: a session thread connects, reads the stream and reconnects with
// the same client id when it breaks; a writer thread sends (the caller of
// Acquire or Release writes its own message when no other Write is under
// way, saving a wake-up); a timer thread
// heartbeats every term/3 and notices when the term runs out; a revoke
// thread runs the RevokeHandler, so a long flush delays neither heartbeats
// nor grants for other files.
//
// The agent mirrors the manager's view of this client. Grants and revokes
// for one file are applied in the order the manager sent them: a grant that
// arrives while an earlier revoke of the same file is still being handled
// waits for that revoke to finish, so a handler never runs against a lease
// granted after its revoke.
//
// Expiry: a lease is trusted until the send time of the last renewal the
// manager acknowledged, plus the term, minus the drift margin; the manager
// regrants only after the full term from the renewal it saw, which is later.
// When the trusted time runs out the agent treats every lease as lost: Holds
// turns false, the handler is called with kNone for each file, and the
// session is re-established. Dirty data the node still writes back after
// that carries its old fencing token, which storage refuses once anyone else
// has written under a newer lease: it can reach storage only while its token
// is still current.
#ifndef DFUSE_LEASE_AGENT_H_
#define DFUSE_LEASE_AGENT_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "lease/lease_mode.h"
#include "proto/lease.grpc.pb.h"
#include "util/stats.h"

namespace dfuse::lease {

struct LeaseAgentOptions {
  // HOST:PORT of the lease manager, or of every manager of a highly
  // available group, comma-separated: the agent tries them in turn (on a
  // connect failure or a standby's refusal), going straight to the leader a
  // standby names, and reclaims its leases on the one that welcomes it.
  std::string manager;
  std::string name;  // shown in the manager's logs
  // Identifies the session across reconnects; 0: a random id, kept for the
  // agent's lifetime.
  uint64_t client_id = 0;
  // Emulated network round trip added to every message sent (0 = none).
  std::chrono::microseconds emulated_rtt{0};
  // The channels' credentials (util/tls.h).
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  // How much earlier than the manager the agent stops trusting its leases,
  // to cover clock-rate drift. At most a quarter of the term is used.
  std::chrono::milliseconds drift_margin{100};
  // Threads running revoke handlers at first. One file's revokes run one
  // at a time, in order; several files' run side by side, so a slow
  // write-back of one file does not hold up the revokes (and the other
  // nodes' grants) of every other file. When every thread is busy and
  // another file has a job, one more is started (up to
  // LeaseAgent::kMaxRevokeThreads): a handler may wait for as long as the
  // node's users of the file wait for other nodes (dfuse's kernel drains
  // them first), and a fixed pool all blocked that way would hold up the
  // revokes those other nodes wait for.
  int revoke_threads = 4;
  // How long a caller of Acquire polls for its grant before it sleeps: a
  // grant that comes back within it (an uncontended round trip) reaches a
  // running caller, not one the reader thread must wake, which costs about
  // as much as the round trip itself on an idle machine (bench/
  // lease_service_bench.cc: BM_BareStreamReaderSpin against ...Hop). The
  // poll yields the CPU on every turn, and is left out while the last
  // Acquire that asked the manager took longer than this (a slow network,
  // an emulated machine, a contended file): it would only burn CPU there.
  // 0: sleep at once.
  std::chrono::microseconds acquire_spin{200};
  // Called instead of the RevokeHandler before a READ lease is upgraded to
  // WRITE, when set (on a revoke thread, in order with the file's other
  // handler calls): the node must stop serving from what it cached under
  // the READ lease, but may keep it. The manager's grant says whether a
  // writer came in between; if one did, the RevokeHandler runs with kNone
  // before the grant applies. Unset: the RevokeHandler drops the cache with
  // kNone before the request is sent (the paper's Algorithm 1).
  // `grant` is the number of the READ grant given up (as Acquire returns
  // it; 0 if it has none): answers of that grant still on their way are
  // stale, those of the WRITE grant to come are not.
  std::function<void(uint64_t gfid, uint64_t grant)> before_upgrade;
  // Called instead of the RevokeHandler for a revoke to NONE, when set: the
  // node does what the handler does (its data durable, the hand-off given)
  // but may keep its clean cache, out of use, and returns true if it did.
  // The next Acquire names the version of the lease it was cached under,
  // and before that grant applies the agent calls refresh_kept with what
  // the WRITE leases granted between handed over, or, if the manager cannot
  // tell, the RevokeHandler with kNone. A cache kept before an upgrade
  // (before_upgrade) is refreshed in the same way.
  std::function<bool(uint64_t gfid, std::chrono::milliseconds linger)> release_keeping;
  // Drops from the kept cache of gfid what the hand-offs in `since`
  // (Grant.since, opaque here) say was written; false if they do not say,
  // and the RevokeHandler then drops everything (kNone). On a revoke
  // thread, in order with the file's handler calls.
  std::function<bool(uint64_t gfid, const std::vector<std::string>& since)> refresh_kept;
  // The node's RevokeHandler honours `linger` (a revoke may then come
  // before the manager's minimum hold is over; see Hello.lingers).
  bool lingers = false;
};

// Called on one of the agent's revoke threads when the node must drop to
// `to` on `gfid` (a revoke from the manager, or kNone when leases are lost,
// before a READ lease is upgraded without before_upgrade, or after one that
// kept its cache when a writer came between): make the node's cached state for gfid
// safe for `to` (flush dirty data to storage, drop caches) and return; the
// agent then acks. It may block for a long time (kernel writeback). It must
// be idempotent and must not call Acquire: grants for gfid wait for it.
// Calls for one file never overlap; calls for different files may. With
// LeaseAgentOptions::lingers, a revoke's `linger` above zero lets the node
// go on using the lease that long, but no longer than it is in use; it is
// zero for everything but a revoke.
using RevokeHandler =
    std::function<void(uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger)>;

class LeaseAgent {
 public:
  // `stats` must outlive the agent.
  LeaseAgent(const LeaseAgentOptions& options, RevokeHandler handler, StatsRegistry* stats);
  ~LeaseAgent();  // Shutdown()

  LeaseAgent(const LeaseAgent&) = delete;
  LeaseAgent& operator=(const LeaseAgent&) = delete;

  // Connects and waits for the manager's Welcome. Returns 0, or EIO with a
  // one-line *error if the manager cannot be reached within `timeout`.
  int Start(std::chrono::milliseconds timeout, std::string* error);

  // Blocks until the manager has granted this node at least `mode` on gfid;
  // returns 0 and the lease's fencing token (0 unless WRITE is held). A
  // revoke may follow at any time, so callers serialize their use of the
  // lease with their RevokeHandler and check Holds() under that lock.
  // Returns EIO if the manager stays unreachable for a lease term, EINTR
  // after Shutdown, EINVAL for kNone. Concurrent calls for the same file
  // share one request. With `grant`, also the grant's number (the id of
  // the request it answered: increasing), which RevokingGrant names when a
  // revoke takes that grant back.
  int Acquire(uint64_t gfid, LeaseMode mode, uint64_t* token, uint64_t* grant = nullptr);

  // True if at least `mode` is held on gfid and its term (minus the drift
  // margin) has not run out since the last acknowledged renewal. No RPC.
  bool Holds(uint64_t gfid, LeaseMode mode, uint64_t* token = nullptr);
  // The fencing token of gfid's WRITE lease that a revoke being handled
  // takes away, or 0: the handler's write-back still goes under it, even
  // when the grant it revokes has not reached its caller yet.
  uint64_t RevokedWriteToken(uint64_t gfid);
  // The number of the grant (as Acquire returns it) that the revoke whose
  // handler is running for gfid takes back, or 0 (no revoke, or a handler
  // called for anything else): a node may let the caller that asked for
  // that grant use it once before it lets go.
  uint64_t RevokingGrant(uint64_t gfid);
  // The proof of origin the manager granted with `token` on gfid (storage
  // wants it with every change under the token); "" if the manager sent
  // none or the file's lease is gone.
  std::string Proof(uint64_t gfid, uint64_t token);

  // True while the leases' term (minus the drift margin) has not run out
  // since the last acknowledged renewal. Lock-free: callers that cache
  // what a lease lets them keep check it on every use, because when the
  // term runs out the manager may regrant before this agent's timer has
  // dropped anything.
  bool Trusted() const {
    return Clock::now().time_since_epoch().count() <
           trusted_until_.load(std::memory_order_acquire);
  }
  // How many leases this agent has lost (the session ended without its
  // leases, or their term ran out) since it started. Lock-free, for the
  // same callers as Trusted(): a cache that records it when it sees its
  // lease held and finds it unchanged later has lost nothing meanwhile.
  // Trusted() alone cannot say so: a new session makes it true again while
  // the handler has yet to drop what the old one lost. Read after Trusted():
  // a loss is counted before the renewal that follows it is published.
  uint64_t Losses() const { return lost_.load(std::memory_order_acquire); }
  // How much longer Trusted() stays true if no renewal comes (zero once it
  // is false): the most a cache that is not checked on every use (the
  // kernel's attributes) may be trusted for.
  std::chrono::steady_clock::duration TrustedFor() const {
    const auto left =
        std::chrono::steady_clock::duration(trusted_until_.load(std::memory_order_acquire)) -
        std::chrono::steady_clock::now().time_since_epoch();
    return std::max(left, std::chrono::steady_clock::duration::zero());
  }

  // Gives up the lease on gfid (e.g. on forget). The caller has already
  // made its data durable. Asynchronous.
  void Release(uint64_t gfid);

  // From the RevokeHandler of a revoke of gfid's WRITE lease: storage's
  // attributes of the file after the handler's write-back and storage's
  // proof of them (WriteReply.attrs), sent with the ack for the file's next
  // holders (RevokeAck.handoff).
  void HandOff(uint64_t gfid, std::string attrs, std::string proof);
  // What the last WRITE holder handed over with the lease now held on gfid
  // (Grant.handoff): false if nothing was, or it is dropped already: the
  // lease was revoked, lost, released or upgraded since, or DropHandoff.
  bool Handoff(uint64_t gfid, std::string* attrs);
  // This node is changing gfid on storage: what was handed over is old.
  void DropHandoff(uint64_t gfid);

  // Ends the session: messages already queued (Release calls made before)
  // are sent first and the stream is closed cleanly, waiting up to
  // kCloseTimeout for the manager, then cut. Leases not released stay with
  // the manager until their term runs out. Waits for a running handler.
  // Idempotent.
  void Shutdown();
  static constexpr std::chrono::milliseconds kCloseTimeout{2000};
  // Revoke threads, at most (LeaseAgentOptions::revoke_threads).
  static constexpr size_t kMaxRevokeThreads = 256;

  uint64_t client_id() const { return client_id_; }

  // What the agent is waiting for (StateProbe, in the stats dump as
  // "lease_agent.<client id>"): the session, the send queue, and every file
  // with a request outstanding, jobs queued or a revoke being handled.
  nlohmann::json State();

 private:
  using Clock = std::chrono::steady_clock;
  using Stream = grpc::ClientReaderWriter<proto::ClientMessage, proto::ManagerMessage>;

  // An Acquire sent to the manager, shared by the callers that wait for it.
  struct Request {
    uint64_t id;
    uint64_t gfid;
    LeaseMode mode;
    uint64_t known_version = 0;  // Acquire.known_version, when last sent
    Clock::time_point asked;     // when the first caller asked (State)
    bool held_back = false;  // sent by a revoke thread after the file's pending jobs
    // Granted, failed or voided. Set under mu_; callers polling for it
    // (LeaseAgentOptions::acquire_spin) read it without.
    std::atomic<bool> done{false};
    bool granted = false;
    int error = 0;       // from the manager (EINVAL)
    uint64_t token = 0;  // of the grant
    int waiters = 0;
    // The callers waiting for it are woken here, by the thread that
    // completes the request, and by nothing else but a change of session
    // (WakeAcquirers): a grant for one file wakes none of the other
    // threads blocked in the agent.
    std::condition_variable cv;
  };

  // Revoke-thread work on one file, kept in arrival order per file.
  struct Job {
    enum Kind {
      kRevoke,   // run the handler for a revoke, then ack
      kDrop,     // run the handler for a lost lease or before an upgrade
      kRefresh,  // refresh a kept cache (refresh_kept) before a grant applies
      kGrant,    // apply a grant that arrived behind a revoke
      kSend,     // send a request held back by the jobs before it
    } kind;
    uint64_t gfid;
    LeaseMode to = LeaseMode::kNone;     // kRevoke, kDrop
    bool keep = false;                   // kDrop: before an upgrade, via before_upgrade
    std::vector<std::string> since;      // kRefresh: Grant.since
    uint64_t revoke_id = 0;              // kRevoke
    uint64_t takes_grant = 0;            // kRevoke, kDrop: the grant it takes back (File::grant)
    std::chrono::milliseconds linger{0};  // kRevoke: Revoke.linger_ms
    std::shared_ptr<Request> then_send;  // kDrop, kSend: the request to send afterwards
    proto::Grant grant;                  // kGrant
    uint64_t losses = 0;                 // kGrant: File::losses when queued
  };

  struct File {
    LeaseMode held = LeaseMode::kNone;
    uint64_t token = 0;
    uint64_t grant = 0;           // the number of the grant held (Grant.request_id)
    uint64_t revoking_grant = 0;  // RevokingGrant, while a revoke's handler runs
    // The file's revoke-thread jobs, run in order by one revoke thread at a
    // time; other files' jobs run beside them on the other threads.
    std::deque<Job> queue;
    bool running = false;   // a revoke thread is running one of them (popped)
    int grants_queued = 0;  // grants among the jobs, waiting for an earlier revoke
    // The last queued grant's, while it is still to be applied (kNone once
    // applied, or voided by a loss).
    LeaseMode queued_mode = LeaseMode::kNone;
    uint64_t queued_token = 0;
    uint64_t losses = 0;               // bumped when the lease is lost: voids queued grants
    // The cache was kept across an upgrade (before_upgrade) or a revoke
    // (release_keeping) and no handler has dropped it since: the next grant
    // says whether it is current, or what changed since kept_version. The
    // entry is not forgotten meanwhile.
    bool kept = false;
    bool kept_for_upgrade = false;
    uint64_t kept_version = 0;
    uint64_t version = 0;  // Grant.version of the lease held
    // The mode (and token) a revoke took away while its handler has not
    // finished: the manager still counts it until the ack, which a broken
    // stream loses, so a reconnect reclaims it (kNone when none is running).
    LeaseMode revoked_from = LeaseMode::kNone;
    uint64_t revoked_token = 0;
    int revokes = 0;  // kRevoke jobs queued or running
    std::shared_ptr<Request> request;  // the outstanding one, if any
    // The grant's hand-off while the lease it came with is held (Handoff).
    std::string handoff_in;
    // HandOff's, for the ack of the revoke being handled.
    std::string handoff_out;
    std::string handoff_out_proof;
    // Proofs of the file's latest WRITE tokens, by token. A token still in
    // use (held, queued or being revoked) is always among the newest
    // kProofsKept: tokens only grow.
    std::map<uint64_t, std::string> proofs;

    // Revoke-thread jobs queued or running for the file.
    size_t jobs() const { return queue.size() + (running ? 1 : 0); }
  };
  static constexpr size_t kProofsKept = 4;

  struct Outgoing {
    proto::ClientMessage msg;
    Clock::time_point due;  // emulated round trip
  };

  void SessionLoop();
  // Returns true if it went round every address without being welcomed.
  bool RunStream();
  // Picks the address of the next stream, after one to `current_` that was
  // welcomed (or not) and possibly named `leader`. Under mu_.
  bool NextAddress(bool welcomed, const std::string& leader);
  void WriteLoop(Stream* stream, uint64_t generation);
  // Writes the queued messages that are due from the calling thread, unless
  // another thread is writing (which then sends them); the rest is left to
  // the writer thread. Under mu_ (released around each Write).
  void SendQueued(std::unique_lock<std::mutex>& l);
  // Pops the first queued message and writes it with mu_ released (one
  // writer at a time: writing_). False if the write failed; the stream is
  // then cancelled, so the session thread reconnects.
  bool WriteFront(Stream* stream, std::unique_lock<std::mutex>& l);
  void TimerLoop();
  void RevokeLoop();
  // Queues `job` behind the file's earlier jobs (under mu_).
  void QueueJob(File& file, Job job);
  // gfid has jobs and no thread on them: wakes an idle revoke thread, or
  // starts one if none is (under mu_).
  void MakeReady(uint64_t gfid);

  // Everything below runs under mu_.
  void Send(proto::ClientMessage msg);
  void SendAcquire(Request& req);
  void SendRelease(uint64_t gfid);  // on a welcomed stream
  // Answers revoke `revoke_id`, keeping `kept` of the file's lease, with
  // a hand-off (empty: none).
  void SendRevokeAck(uint64_t gfid, uint64_t revoke_id, LeaseMode kept, std::string handoff = {},
                     std::string proof = {});
  void OnWelcome(const proto::Welcome& welcome, Clock::time_point hello_sent);
  void OnMessage(const proto::ManagerMessage& msg);
  void ApplyGrant(File& file, const proto::Grant& grant);
  // Marks `req` answered and wakes its callers.
  static void Complete(Request& req);
  // Wakes every caller waiting in Acquire: the session connected,
  // disconnected or is shutting down.
  void WakeAcquirers();
  // The node now claims a lease: wakes the timer if it sleeps past the
  // moment the leases' term runs out.
  void NoteClaim();
  void SendHeldBack(File& file, const std::shared_ptr<Request>& req);
  void Lose(uint64_t gfid, File& file);
  void LoseAll(const char* why);
  void Forget(uint64_t gfid);
  bool HoldsLocked(uint64_t gfid, LeaseMode mode, uint64_t* token);
  // The strongest lease the manager may think we hold: held, a queued
  // grant's, or one a revoke still being handled took away.
  static LeaseMode Claimed(const File& file);
  bool Holding() const;
  std::shared_ptr<Request> NewRequest(uint64_t gfid, LeaseMode mode);

  const LeaseAgentOptions options_;
  const uint64_t client_id_;
  const RevokeHandler handler_;
  StatsRegistry* const stats_;
  const std::string probe_name_;                                   // State()'s in stats_
  std::vector<std::string> addresses_;                             // from options_.manager
  std::vector<std::unique_ptr<proto::LeaseManager::Stub>> stubs_;  // one per address
  size_t current_ = 0;                                             // the address tried now (mu_)
  size_t unwelcomed_tries_ = 0;  // streams since the last welcome (mu_)

  std::mutex mu_;
  std::condition_variable cv_;  // session changes: Start, Shutdown and the session wait on it
  std::condition_variable timer_cv_;  // the timer: its wake-up time may have moved earlier
  Clock::time_point timer_wake_ = Clock::time_point::max();  // the timer's current deadline
  std::condition_variable out_cv_;   // the writer
  std::condition_variable jobs_cv_;  // the revoke threads
  bool started_ = false;
  bool shutdown_ = false;
  bool closing_ = false;  // Shutdown: the writer half-closes once out_ is empty
  bool connected_ = false;   // the current stream has been welcomed
  uint64_t generation_ = 0;  // of the current stream
  uint64_t welcomes_ = 0;
  std::string refusal_;  // why a manager last refused a Hello
  grpc::ClientContext* ctx_ = nullptr;  // of the current stream, to cancel it
  Stream* stream_ = nullptr;            // the current stream, while welcomed
  bool writing_ = false;       // a thread is in stream_->Write (one at a time)
  bool caller_sends_ = false;  // Send leaves the message to SendQueued's caller
  Clock::time_point disconnected_since_;
  std::chrono::milliseconds term_{0};  // from the Welcome
  std::chrono::milliseconds margin_{0};
  Clock::time_point valid_until_;  // leases are trusted until then
  // valid_until_, for Trusted() (written under mu_).
  std::atomic<Clock::rep> trusted_until_{0};
  void SetValidUntil(Clock::time_point t);
  std::atomic<uint64_t> lost_{0};  // for Losses() (written under mu_)
  Clock::time_point next_heartbeat_;
  uint64_t heartbeat_seq_ = 0;
  std::deque<std::pair<uint64_t, Clock::time_point>> heartbeats_;  // unacked: (seq, sent)
  std::deque<Outgoing> out_;
  // Leases given up while no stream was welcomed: their Release had nowhere
  // to go, and the Hello sent before may have reclaimed them. Sent with the
  // next Welcome.
  std::vector<uint64_t> unsent_releases_;
  std::deque<uint64_t> ready_;  // files with queued jobs and no revoke thread on them
  size_t revoke_idle_ = 0;      // revoke threads waiting for a file to be ready
  std::unordered_map<uint64_t, File> files_;
  uint64_t next_request_id_ = 1;
  // The last Acquire that asked the manager was answered within
  // options_.acquire_spin: the next one polls for its grant.
  bool acquire_quick_ = true;

  std::thread session_thread_;
  std::thread timer_thread_;
  std::vector<std::thread> revoke_threads_;

  Counter* grants_;
  Counter* revokes_;
  Counter* revokes_of_nothing_;
  Counter* requests_;
  Counter* losses_;
  Counter* upgrades_kept_;   // grants that found a kept READ cache current ...
  Counter* upgrades_stale_;  // ... or not
  Counter* kept_on_revoke_;  // revokes to NONE that kept the cache (release_keeping)
  Counter* kept_current_;    // grants that found a kept cache current ...
  Counter* kept_refreshed_;  // ... or dropped what others wrote from it (refresh_kept) ...
  Counter* kept_dropped_;    // ... or had to drop it whole
  // Grants that brought a hand-off; hand-offs dropped by DropHandoff; asks
  // of Handoff while the lease was held that found none (a GETATTR the
  // daemon then sends to storage).
  Counter* handoffs_received_;
  Counter* handoffs_dropped_;
  Counter* handoff_misses_;
  Counter* reconnects_;
  Latency* acquire_latency_;
  Latency* handler_latency_;
};

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_AGENT_H_
