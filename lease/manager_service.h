// The lease manager server: the LeaseManager gRPC service driving one
// StateMachine, for the dfuse-lease-manager binary and for tests that run it
// in-process.
//
// Every client message and every timer tick is applied to the state machine
// under one mutex, and the actions it produces are queued, in order, on the
// stream of the client they are for; each stream has its own writer thread,
// so a client that reads slowly delays only itself. Replies to the client
// whose message was handled (a grant without a conflict, an error) are
// written by that stream's own session thread, without a hand-off.
#ifndef DFUSE_LEASE_MANAGER_SERVICE_H_
#define DFUSE_LEASE_MANAGER_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "util/fencing_key.h"
#include "util/tls.h"

namespace grpc {
class Server;
}

namespace dfuse::lease {

class ManagerService;

struct ManagerOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0 picks a free port
  // Fencing tokens are (epoch << 40) | counter, so the epoch must grow with
  // every restart or a new writer's token could be refused, or even reused.
  // 1 .. 2^24-1.
  uint64_t epoch = 1;
  uint64_t term_ms = 5000;   // a session expires this long after its last renewal
  uint64_t min_hold_ms = 2;  // a holder is not revoked before holding this long
  // Up to this long when revoking the file costs more (state_machine.h).
  uint64_t max_hold_ms = 50;
  // Window after start in which clients of a previous manager re-assert
  // their leases (Hello.reclaim) before anything new is granted; 0: none.
  uint64_t reclaim_ms = 0;
  // Start as a standby of a highly available group (election.h): every
  // Hello is refused with an Error naming the leader, until Activate.
  bool standby = false;
  TlsFiles tls;  // none: plain text (util/tls.h)
  // Bounds that keep one client from crowding out the others (0: none).
  // Sessions opened with one certificate and not yet expired (a restarted
  // client's old session counts until its term runs out); not applied in
  // plain text, where clients have no identity.
  size_t max_sessions_per_client = 16;
  // Acquires of one session waiting for their grant at once.
  size_t max_pending_acquires = 4096;
  // With a key, each WRITE grant carries its token's proof of origin for the
  // session's certificate identity (util/fencing_key.h).
  std::shared_ptr<const FencingKey> fencing_key;
};

class ManagerServer {
 public:
  // Starts serving. On failure returns null and sets *error to a one-line
  // reason.
  static std::unique_ptr<ManagerServer> Start(const ManagerOptions& options, std::string* error);

  ~ManagerServer();  // Shutdown()

  ManagerServer(const ManagerServer&) = delete;
  ManagerServer& operator=(const ManagerServer&) = delete;

  int port() const { return port_; }

  // A standby becomes the active manager with `epoch` (from the election):
  // its reclaim window opens now. There is no way back: a manager that loses
  // leadership stops serving altogether (Shutdown).
  void Activate(uint64_t epoch);
  // The active manager's address, named in a standby's refusals ("" if none).
  void SetLeader(const std::string& address);

  // Latencies (acquire to grant, revoke to ack), the state machine's
  // counters and table sizes, and lease.active / lease.leader.
  nlohmann::json Stats() const;
  // Writes Stats() atomically (temp file + rename). Returns false on error.
  bool DumpStats(const std::string& path) const;

  // Cuts every session stream at once (clients see the manager vanish, as
  // after a crash; their sessions die with this process) and stops.
  // Idempotent.
  void Shutdown();

 private:
  ManagerServer();

  std::unique_ptr<ManagerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_MANAGER_SERVICE_H_
