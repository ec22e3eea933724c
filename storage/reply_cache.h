// A reply cache for calls that are not idempotent, in the manner of NFSv4.1
// sessions: a client names every such call with a RequestId (its random
// client id and a sequence number) and sends the same id on every retry of
// that call, so that a retry after a lost reply gets the first reply instead
// of running the call again (an exclusive create that already happened would
// say EEXIST, an unlink ENOENT).
//
// What it guarantees, while it remembers an id: the call runs at most once;
// any other call with that id waits until that run is over and then gets its
// reply, byte for byte. An id reused for another RPC or other request
// contents is reported as a mismatch and nothing runs.
//
// What it does not guarantee:
//  * The cache is in memory only. A retry that reaches the service after a
//    restart of the service runs again, and may then fail with EEXIST or
//    ENOENT for a change its first attempt made.
//  * Memory is bounded (see the constructor): a retry of a call that was
//    evicted runs again. Eviction takes a client's oldest calls first and the
//    least recently heard-from clients first, so only a retry that comes
//    after many newer calls, or from a long-silent client, is affected.
//  * Calls without an id are not cached: they run every time.
#ifndef DFUSE_STORAGE_REPLY_CACHE_H_
#define DFUSE_STORAGE_REPLY_CACHE_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace dfuse::storage {

class ReplyCache {
 public:
  struct Id {
    uint64_t client_id;  // non-zero
    uint64_t seq;
  };

  enum class Outcome {
    kExecuted,  // the call ran now
    kReplayed,  // an earlier run's reply was returned
    kMismatch,  // the id belongs to a different call; nothing ran
  };

  // Keeps the replies of each client's `max_calls_per_client` most recent
  // calls, for the `max_clients` clients heard from most recently. With the
  // defaults, and the small replies of namespace calls (about 250 bytes per
  // call with the bookkeeping), that is at most about 32 MiB; a retry is
  // answered from the cache as long as its client made fewer than 1024
  // newer calls meanwhile and 128 other clients did not all call since.
  explicit ReplyCache(size_t max_calls_per_client = 1024, size_t max_clients = 128);

  ReplyCache(const ReplyCache&) = delete;
  ReplyCache& operator=(const ReplyCache&) = delete;

  // Runs call `id` of RPC `rpc` at most once. `fingerprint` identifies the
  // request's contents. For an id not in the cache, runs `execute`, which
  // applies the call and returns its serialized reply, keeps that reply and
  // returns kExecuted. For an id in the cache with the same rpc and
  // fingerprint, waits until its run is over, copies its reply into *reply
  // and returns kReplayed. Otherwise returns kMismatch. If `execute` throws,
  // the id is forgotten (a later retry runs it) and the exception
  // propagates.
  Outcome Run(Id id, int rpc, uint64_t fingerprint, const std::function<std::string()>& execute,
              std::string* reply);

  // Sizes, for tests and stats.
  size_t clients() const;
  size_t calls() const;

 private:
  struct Call {
    Call(int r, uint64_t f) : rpc(r), fingerprint(f) {}
    const int rpc;
    const uint64_t fingerprint;
    // Guarded by mu_. `reply` is set once `running` is false, unless the
    // run threw (`abandoned`).
    bool running = true;
    bool abandoned = false;
    std::string reply;
  };
  struct Client {
    std::unordered_map<uint64_t, std::shared_ptr<Call>> calls;  // by seq
    std::deque<uint64_t> order;                                 // seqs, oldest first
    std::list<uint64_t>::iterator lru;                          // in lru_
  };

  // The client's entry, made most recently used (created if new, evicting
  // the least recently used client past the bound). Requires mu_.
  Client* TouchLocked(uint64_t client_id);
  // Forgets `call`, call `seq` of a client, after its run threw. Requires
  // mu_.
  void ForgetLocked(uint64_t client_id, uint64_t seq, const Call* call);

  const size_t max_calls_per_client_;
  const size_t max_clients_;

  mutable std::mutex mu_;
  // Signalled whenever a run ends. One for all calls: waiting is rare (a
  // retry overtaking its own first attempt), so broad wake-ups cost little.
  std::condition_variable run_ended_;
  std::unordered_map<uint64_t, Client> clients_;  // by client id
  std::list<uint64_t> lru_;                       // client ids, most recent first
  size_t calls_ = 0;                              // over all clients
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_REPLY_CACHE_H_
