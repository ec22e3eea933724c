// The lease manager's core (ARCHITECTURE.md section 5): per-file read and
// write leases, revocation, session expiry and failover reclaim.
//
// StateMachine is deterministic, single-threaded and does no I/O: it never
// reads a clock and never sends anything. The driver (the gRPC server) feeds
// it client messages together with the current time, sends the Actions each
// call appends to `out`, and calls Tick() once NextDeadline() has passed.
// The same inputs always produce the same outputs, which is what lets tests
// replay any history exactly.
//
// Rules, per GFID:
//  * At most one WRITE holder, or any number of READ holders.
//  * Requests are served in arrival order. A READ request queues behind any
//    earlier waiter even when it is compatible with the current holders, so
//    a stream of readers cannot starve a writer.
//  * A request that conflicts queues; every holder that conflicts with the
//    head of the queue gets one revoke, all in parallel. A WRITE holder is
//    revoked to READ (a downgrade that keeps its clean cache) when the head
//    wants READ, otherwise to NONE. Once every conflicting holder has acked,
//    the head is granted, and so is every following waiter compatible with it.
//  * A holder is not revoked before it has held its lease for min_hold_ms:
//    this damps ping-pong under contention. With max_hold_ms above it, the
//    hold adapts per file to what taking the lease away costs there (the
//    recent revoke-to-ack times, up to max_hold_ms): a holder then gets at
//    least as long to use its cache as the handoff takes, so a contended
//    file spends no more than half its time changing hands.
//  * A session that lingers (OpenSession) gets its revoke at once instead,
//    with what is left of the hold as linger_ms: the client keeps the lease
//    while it uses it and gives it up as soon as it has used it and nothing
//    uses it any more, or when linger_ms has passed. A hold that waits out
//    its time with nothing to do keeps every waiter waiting for nothing;
//    only the client can tell the two apart. Its acks do not count towards
//    the file's revoke cost, which would then include the lingering.
//  * Every WRITE grant carries a fresh fencing token, (epoch << 40) | counter,
//    so tokens increase across files and across manager failovers.
//  * A WRITE holder's ack may hand over what it left the file as (opaque
//    bytes: storage's attributes after its write-back, checked by the
//    driver). Every grant to a client that did not hold the lease carries
//    the last one, until a WRITE lease is acked without one, released or
//    lost: only a WRITE holder changes the file, so they stay current.
//  * Every grant has a version: a WRITE grant's is its token, any other's
//    the last token issued (on any file). A client whose lease went to NONE
//    may keep its cache out of use and name the version it was current at
//    in its next Acquire; the grant then carries the hand-offs of the WRITE
//    leases granted on the file since (each says what its holder wrote), if
//    every one of them was acked with one and the file's short log still
//    has them all. The client drops only what they name (CephFS and NFSv4
//    can only keep a cache that nobody wrote meanwhile).
//  * A READ holder asking for WRITE gives up its READ lease and queues (the
//    paper's Algorithm 1). Its grant says whether the file's data is as the
//    READ lease left it: no WRITE lease went to anyone meanwhile. A client
//    can then keep its READ cache across the upgrade instead of dropping it
//    before asking (NFSv4's change attribute plays this part there).
#ifndef DFUSE_LEASE_STATE_MACHINE_H_
#define DFUSE_LEASE_STATE_MACHINE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lease/lease_mode.h"

namespace dfuse::lease {

// One client session; the driver maps a client's stream to it. The same id
// may resume the session over a new stream (OpenSession).
using ClientId = uint64_t;

using Mode = LeaseMode;

// An inclusive byte range. Requests carry one so that byte-range leases need
// no protocol change; v1 always grants the whole file.
struct ByteRange {
  uint64_t start = 0;
  uint64_t end = UINT64_MAX;
};

// A message for the driver to send to `client`.
struct Action {
  enum Kind {
    kGrant,           // answers an Acquire
    kRevoke,          // the client must drop to `mode` and then RevokeAck
    kSessionExpired,  // every lease of the client is gone
  };
  Kind kind;
  ClientId client;
  uint64_t gfid = 0;
  Mode mode = Mode::kNone;  // kGrant: the mode now held; kRevoke: drop to this
  uint64_t token = 0;       // kGrant: the fencing token when mode is kWrite, else 0
  uint64_t request_id = 0;  // kGrant: the request_id of the Acquire it answers
  // kGrant: the Acquire was an upgrade from READ and no WRITE lease was
  // granted (or reclaimed) on the file since it arrived.
  bool unchanged = false;
  // kGrant to a client that did not hold the lease: the last WRITE
  // holder's hand-off (RevokeAck), or empty.
  std::string handoff;
  // kGrant: see the rule above; with the Acquire's known_version, the
  // hand-offs of the WRITE leases granted since, oldest first, and whether
  // they are all there (since_known).
  uint64_t version = 0;
  std::vector<std::string> since;
  bool since_known = false;
  uint64_t revoke_id = 0;   // kRevoke: the id the RevokeAck must echo
  // kRevoke to a lingering session: how long it may still keep the lease
  // while it uses it (0: give it up now).
  uint64_t linger_ms = 0;
  ByteRange range;          // kGrant: the range granted (always the whole file)
};

enum class Status {
  kOk,
  kNoSession,  // unknown, expired or disconnected session: the client must
               // drop its leases and OpenSession again
  kStale,      // refers to a lease or revoke that no longer exists; ignored
  kRefused,    // a Reclaim that conflicts, or arrives outside the window
  kInvalid,    // malformed arguments; ignored
};

struct Options {
  // The manager's epoch (from etcd, +1 on every failover); below 2^24.
  uint64_t epoch = 0;
  // A session expires this long after its last heartbeat.
  uint64_t term_ms = 5000;
  // A holder is not revoked until it has held its lease this long.
  uint64_t min_hold_ms = 0;
  // Above min_hold_ms: the longest hold the file's revoke cost may ask for
  // (0, or at most min_hold_ms: the hold is always min_hold_ms).
  uint64_t max_hold_ms = 0;
};

struct Counters {
  uint64_t grants = 0;    // every kGrant, including idempotent re-grants
  uint64_t revokes = 0;   // revokes issued (a revoke re-sent on resume is not counted)
  uint64_t expiries = 0;  // sessions expired
  uint64_t reclaims = 0;  // leases re-installed by Reclaim
  uint64_t handoffs = 0;  // grants that carried a hand-off
  // Grants to a known_version that listed the hand-offs since (each may
  // still say its writer's changes are not known) ...
  uint64_t since_known = 0;
  uint64_t since_unknown = 0;     // ... or could not, because:
  uint64_t since_before_log = 0;  //   the version is older than the file's log
  uint64_t since_not_handed = 0;  //   a writer since acked without a hand-off
};

inline constexpr uint64_t kNoDeadline = UINT64_MAX;

// A file someone waits on, as StateMachine::Waiting reports it (for the
// manager's state dump: who holds, who waits, which revokes are unanswered).
struct WaitingFile {
  struct Holder {
    ClientId client;
    Mode mode;
    uint64_t held_ms;        // since granted (or since the minimum hold began)
    uint64_t revoke_id;      // the outstanding revoke, 0 if none
    Mode revoke_to;          // what it asked for
    uint64_t revoke_age_ms;  // since it was sent
    uint64_t linger_ms;
  };
  struct Waiter {
    ClientId client;
    uint64_t request_id;
    Mode mode;
    bool upgrade;
    uint64_t waited_ms;
  };
  uint64_t gfid;
  std::vector<Holder> holders;
  std::vector<Waiter> waiters;  // in queue order
  // How soon the head's blockers are revoked (their minimum hold ends); -1
  // if no revoke is scheduled, and below 0 if one is overdue.
  int64_t revoke_in_ms = -1;
};

class StateMachine {
 public:
  using Actions = std::vector<Action>;

  // WRITE leases a file's log keeps (Action::since); older ones are
  // forgotten, and a client that kept a cache from before them drops it.
  static constexpr size_t kMaxLog = 16;

  // Throws std::invalid_argument if the epoch does not fit in 24 bits.
  explicit StateMachine(const Options& options);
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;

  // --- Sessions ---

  // Opens a session, or resumes `client`'s session if it has not expired:
  // its leases are still held, and every revoke it has not acked is sent
  // again (the old stream may have lost it). Either way the session is
  // renewed. Returns true if an existing session was resumed. A client that
  // `lingers` takes revokes before its hold is over (Action::linger_ms).
  bool OpenSession(ClientId client, uint64_t now_ms, Actions* out, bool lingers = false);

  // Renews every lease of the session. Only Heartbeat and OpenSession renew:
  // a client times its own leases from the heartbeats it saw acknowledged.
  // kNoSession means the session is gone, whatever the client believes.
  Status Heartbeat(ClientId client, uint64_t now_ms);

  // The client's stream broke. Its queued requests are dropped (nobody could
  // be told of their grant), but its leases stay until the session expires:
  // it may still hold dirty data. No revokes are sent to it meanwhile.
  void ClientGone(ClientId client, uint64_t now_ms, Actions* out);

  // --- Leases ---

  // Asks for `mode` (kRead or kWrite) on `gfid`; the answer is a kGrant
  // carrying `request_id`, now or later. A holder that already holds `mode`
  // or stronger, and has no revoke outstanding, is granted at once. A READ
  // holder asking for WRITE gives up its READ lease first (the paper's
  // Algorithm 1: the client has already cleaned its cache) and queues.
  // `known_version`: the version of the client's kept cache, or 0.
  Status Acquire(ClientId client, uint64_t request_id, uint64_t gfid, Mode mode, ByteRange range,
                 uint64_t now_ms, Actions* out, uint64_t known_version = 0);

  // The holder has complied with revoke `revoke_id`: its dirty data is
  // durable and it now holds `acked` (no more than the revoke asked for).
  // From a WRITE holder, `handoff` (possibly empty) replaces the file's
  // hand-off; from a READ holder it is ignored.
  Status RevokeAck(ClientId client, uint64_t gfid, uint64_t revoke_id, Mode acked, uint64_t now_ms,
                   Actions* out, std::string handoff = {});

  // Gives up the lease on `gfid`, revoked or not.
  Status Release(ClientId client, uint64_t gfid, uint64_t now_ms, Actions* out);

  // --- Failover ---

  // Opens the reclaim window on a freshly started manager: until
  // now_ms + window_ms only Reclaim installs leases; Acquires queue and are
  // served by the first Tick after the window.
  void BeginReclaim(uint64_t now_ms, uint64_t window_ms);

  // Re-installs a lease the client held under the previous manager. Refused
  // if it conflicts with a lease reclaimed earlier (first come, first
  // served). A WRITE reclaim must carry its nonzero token from an epoch not
  // after this one; later grants get higher tokens.
  Status Reclaim(ClientId client, uint64_t gfid, Mode mode, uint64_t token, uint64_t now_ms);

  // --- Time ---

  // Expires silent sessions, ends the reclaim window and sends revokes whose
  // minimum hold time has passed, as of `now_ms`.
  void Tick(uint64_t now_ms, Actions* out);

  // When Tick next has work to do; kNoDeadline if never. May be early.
  uint64_t NextDeadline() const;

  // --- Queries (tests and stats) ---

  Mode mode(uint64_t gfid) const;
  Mode HeldMode(ClientId client, uint64_t gfid) const;
  // The fencing token of the client's WRITE lease on gfid, else 0.
  uint64_t HeldToken(ClientId client, uint64_t gfid) const;
  std::vector<ClientId> holders(uint64_t gfid) const;  // sorted
  size_t queue_length(uint64_t gfid) const;
  size_t lease_count() const;  // (client, file) pairs holding a lease
  size_t session_count() const { return sessions_.size(); }
  bool has_session(ClientId client) const { return sessions_.count(client) != 0; }
  bool reclaiming() const { return reclaiming_; }
  const Counters& counters() const { return counters_; }
  // Up to `limit` files with a waiter, longest wait first, as of `now_ms`.
  std::vector<WaitingFile> Waiting(uint64_t now_ms, size_t limit) const;

 private:
  struct Holder {
    ClientId client;
    Mode mode;
    uint64_t token;       // fencing token of a WRITE lease, else 0
    uint64_t granted_ms;  // start of the minimum hold time
    uint64_t revoke_id;   // the outstanding revoke, 0 if none
    Mode revoke_to;       // what the outstanding revoke asked for
    uint64_t revoked_ms;  // when the outstanding revoke was issued
    uint64_t linger_ms;   // the outstanding revoke's linger_ms
  };
  struct Waiter {
    ClientId client;
    uint64_t request_id;
    Mode mode;
    bool upgrade = false;       // asked by a READ holder for WRITE
    uint64_t write_grants = 0;  // File::write_grants when it asked
    uint64_t known_version = 0;
    uint64_t asked_ms = 0;
  };
  // A WRITE lease granted on a file, in its log.
  struct WriteLease {
    uint64_t token;
    bool handed_over = false;  // acked with a hand-off, which is `handoff`
    std::string handoff;
  };

  struct File {
    std::vector<Holder> holders;  // few, so a vector beats a map
    std::deque<Waiter> waiters;
    // Moving average of the file's revoke-to-ack times, in microseconds so
    // that integer rounding does not pin it (times come in whole ms).
    uint64_t revoke_cost_us = 0;
    bool revoke_cost_seen = false;
    // WRITE leases granted or reclaimed while the entry lives (a queued
    // upgrade keeps it alive): the data may have changed when it moved.
    uint64_t write_grants = 0;
    // The last WRITE holder's hand-off; empty once a WRITE lease was acked
    // without one, released or lost (it may have changed the file).
    std::string handoff;
    // Every WRITE lease granted on the file with a token above log_start is
    // in the log, oldest first.
    uint64_t log_start = 0;
    std::deque<WriteLease> log;
  };
  struct Session {
    uint64_t expires_ms = 0;
    bool connected = true;
    bool lingers = false;  // takes revokes early, with linger_ms
    // For each file the client holds or waits on: holdings + queued requests.
    std::unordered_map<uint64_t, uint32_t> refs;
  };

  static Holder* FindHolder(File& file, ClientId client);
  // How long a holder of `file` keeps its lease before it may be revoked.
  uint64_t HoldMs(const File& file) const;
  // What is left at `now_ms` of the linger of the holder's outstanding revoke.
  static uint64_t LingerLeft(const Holder& holder, uint64_t now_ms);
  static std::vector<uint64_t> SortedFiles(const Session& session);
  void Renew(ClientId client, Session& session, uint64_t now_ms);
  void Ref(ClientId client, uint64_t gfid);
  void Unref(ClientId client, uint64_t gfid);
  void RemoveHolder(File& file, ClientId client, uint64_t gfid);
  uint64_t NewToken();
  // The last token issued: the version of a grant that is not WRITE.
  uint64_t LastToken() const;
  // The file's entry, made if missing with a log that starts now.
  File& FileEntry(uint64_t gfid);
  // Fills a grant's since/since_known for a waiter's known_version and
  // counts the answer.
  void TellSince(const File& file, uint64_t known_version, Action* grant);

  // Grants what can be granted on `gfid`, revokes what blocks the head of
  // its queue, and forgets the file once nobody holds or wants it.
  void Advance(uint64_t gfid, uint64_t now_ms, Actions* out);
  static bool Grantable(const File& file, const Waiter& waiter);
  void Grant(File& file, uint64_t gfid, const Waiter& waiter, uint64_t now_ms, Actions* out);
  void RevokeBlockers(File& file, uint64_t gfid, uint64_t now_ms, Actions* out);
  void Expire(ClientId client, uint64_t now_ms, Actions* out);

  const Options options_;
  std::unordered_map<uint64_t, File> files_;
  std::unordered_map<ClientId, Session> sessions_;
  std::set<std::pair<uint64_t, ClientId>> expiry_;      // (expires_ms, client)
  std::set<std::pair<uint64_t, uint64_t>> revoke_due_;  // (min hold ends, gfid)
  uint64_t token_counter_ = 0;                          // low bits of the last token
  uint64_t last_revoke_id_;
  bool reclaiming_ = false;
  uint64_t reclaim_end_ms_ = 0;
  Counters counters_;
};

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_STATE_MACHINE_H_
