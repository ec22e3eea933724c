// Leader election and the manager epoch for highly available lease managers
// (ARCHITECTURE.md section 5), kept in etcd and driven through etcdctl.
//
// Keys, under /dfuse/lease-manager/NAME/:
//   leader  the active manager's advertised HOST:PORT, attached to an etcd
//           lease of `ttl_s` seconds that the active manager keeps alive;
//   epoch   the last epoch any manager became active with.
// A manager becomes active with one transaction: "no leader key, and the
// epoch is still what I read" → put leader, put epoch+1. So two managers can
// never become active with the same epoch, and each failover raises it.
//
// Why etcdctl child processes and not `etcdctl elect`: elect keeps its
// session lease at a fixed 60 s TTL, so a crashed leader would block
// failover for a minute. A `lease keep-alive` child is used instead; it is
// started with PR_SET_PDEATHSIG, so it dies with the manager (even on
// kill -9) and the leader key vanishes one TTL later.
//
// Losing leadership: keep-alive prints a line per renewal (every TTL/3). If
// it exits, or stays silent for 2/3 of the TTL, the lease may have expired
// and another manager may already be active: StillLeader() turns false and
// the caller must stop serving at once. A deposed manager that has not yet
// noticed can only hand out tokens of its older epoch, which storage refuses
// once the new manager's writers have used newer ones (fencing).
//
// Not thread-safe: one thread (the manager's main thread, which must live as
// long as the keep-alive child, since PR_SET_PDEATHSIG follows the forking
// thread) calls everything.
#ifndef DFUSE_LEASE_ELECTION_H_
#define DFUSE_LEASE_ELECTION_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace dfuse::lease {

struct ElectionOptions {
  std::string endpoints;  // etcd client endpoints: HOST:PORT[,HOST:PORT...]
  std::string name = "dfuse";
  std::string proposal;             // this manager's advertised HOST:PORT
  int ttl_s = 3;                    // of the leader key's etcd lease; etcd's minimum is 2
  std::string etcdctl = "etcdctl";  // a path, or a name looked up in PATH
  // Mutual TLS to etcd (https endpoints), all three or none: the cluster CA,
  // this manager's certificate and key (PEM files, util/tls.h).
  std::string tls_ca, tls_cert, tls_key;
};

// What one election round found.
struct ElectionRound {
  enum Kind { kLeader, kFollower, kError } kind = kError;
  uint64_t epoch = 0;  // kLeader: the new epoch
  std::string leader;  // kFollower: the active manager's address, or "" between leaders
  std::string error;   // kError: one line
};

class Election {
 public:
  explicit Election(ElectionOptions options);
  ~Election();  // Resign()

  Election(const Election&) = delete;
  Election& operator=(const Election&) = delete;

  // Finds etcdctl and reads the election keys once. False with a one-line
  // *error if etcdctl is missing or etcd does not answer.
  bool Check(std::string* error);

  // Becomes leader if nobody is: returns kLeader with the new epoch, and from
  // then on this object holds leadership until Resign or loss. Otherwise
  // kFollower with the current leader, or kError (etcd unreachable...).
  ElectionRound TryOnce();

  // While leader: false once the leadership may have been lost.
  bool StillLeader();

  // Gives leadership up at once (stops the keep-alive, revokes the etcd
  // lease, which deletes the leader key). Idempotent; a no-op as follower.
  void Resign();

  const std::string& leader_key() const { return leader_key_; }
  const std::string& epoch_key() const { return epoch_key_; }

 private:
  using Clock = std::chrono::steady_clock;

  // etcdctl and its connection flags: endpoints, dial timeout and, with TLS,
  // https endpoints and the certificate files.
  std::vector<std::string> Connection() const;
  // Runs etcdctl with `args` (after the connection flags) and `input` on its
  // stdin. Returns its exit status (-1 if it could not run or timed out);
  // *out gets stdout, *err the last line of stderr.
  int Etcdctl(const std::vector<std::string>& args, const std::string& input, std::string* out,
              std::string* err);
  bool StartKeepAlive(std::string* error);
  void StopKeepAlive();

  const ElectionOptions options_;
  const std::string leader_key_;
  const std::string epoch_key_;
  std::string etcdctl_path_;

  bool leader_ = false;
  std::string lease_id_;  // hex, while leader
  pid_t keepalive_pid_ = -1;
  int keepalive_fd_ = -1;  // its stdout
  std::thread keepalive_reader_;
  // Steady-clock ns of the last renewal keep-alive reported (or of the grant).
  std::atomic<int64_t> last_renewal_ns_{0};
};

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_ELECTION_H_
