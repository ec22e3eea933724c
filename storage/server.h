// The storage server: the Storage service on a gRPC endpoint, for the
// dfuse-storage binary and for tests that run it in-process.
#ifndef DFUSE_STORAGE_SERVER_H_
#define DFUSE_STORAGE_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage/access.h"
#include "util/fencing_key.h"
#include "util/stats.h"
#include "util/tls.h"

namespace grpc {
class Server;
}

namespace dfuse::storage {

class HandleTable;
class StorageService;

struct StorageOptions {
  std::string export_dir;              // the directory to export; must exist
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0 picks a free port
  std::string state_dir;               // empty: DefaultStateDir(export_dir)
  uint32_t shard_id = 1;               // 1..65535, the high bits of every GFID
  int threads = 0;                     // threads polling for calls; 0: gRPC's default
  size_t max_cached_files = 4096;      // LRU bound of the handle table
  // Calls one client may have in progress at once; more get
  // RESOURCE_EXHAUSTED (0: no bound). A client daemon has at most its FUSE
  // threads, lease workers and write-back in flight.
  size_t max_in_flight_per_client = 512;
  AccessRules access;  // which clients may read and write (storage/access.h)
  // Fencing tokens need their proof of origin (util/fencing_key.h); none:
  // tokens are checked for order only.
  std::shared_ptr<const FencingKey> fencing_key;
  // Issue a key beside every GFID and refuse a GFID without its key
  // (storage/handle_secret.h; the secret lives in the state dir). The
  // daemon always does; off for library users that name GFIDs directly.
  bool handle_keys = false;
  TlsFiles tls;        // none: plain text (util/tls.h)
  // Testing only: (RPC name, N) pairs, see StorageServer::InjectLostReplies.
  std::vector<std::pair<std::string, uint32_t>> lost_replies;
};

// Parses "RPC:N[,RPC:N...]" (e.g. "Mkdir:1,Rename:2"; RPC as named in the
// service definition, N > 0) into `out`. On failure returns false and sets
// *error to a one-line reason.
bool ParseLostReplies(const std::string& spec, std::vector<std::pair<std::string, uint32_t>>* out,
                      std::string* error);

// `<parent of export>/.<export name>.dfuse-state`: next to the export, never
// inside it, so clients cannot see or change it.
std::string DefaultStateDir(const std::string& export_dir);

class StorageServer {
 public:
  // Checks the options, creates the state directory if needed, loads the
  // handle log and starts serving. On failure returns null and sets *error
  // to a one-line reason.
  static std::unique_ptr<StorageServer> Start(const StorageOptions& options, std::string* error);

  ~StorageServer();  // Shutdown()

  StorageServer(const StorageServer&) = delete;
  StorageServer& operator=(const StorageServer&) = delete;

  int port() const { return port_; }
  StatsRegistry* stats() { return &stats_; }

  // Testing: the next `count` calls of `rpc` are applied and then answered
  // with gRPC UNAVAILABLE instead of their reply, as if the reply was lost
  // on the wire (see StorageService::InjectLostReplies). False if there is
  // no such RPC.
  bool InjectLostReplies(const std::string& rpc, uint32_t count);

  // Stops accepting calls, gives running ones up to a second to reply
  // (their work always completes), and makes the handle log durable.
  // Idempotent.
  void Shutdown();

 private:
  StorageServer();

  StatsRegistry stats_;
  std::unique_ptr<HandleTable> table_;
  std::unique_ptr<StorageService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_SERVER_H_
