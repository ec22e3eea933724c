#include "storage/server.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <grpcpp/grpcpp.h>

#include "storage/handle_table.h"
#include "storage/limits.h"
#include "storage/service.h"
#include "util/gfid.h"

namespace dfuse::storage {
namespace fs = std::filesystem;
namespace {

// Descriptors kept for everything but the handle table's cache: gRPC
// sockets, the log, directories opened by ReadDir and Fsync.
constexpr rlim_t kReservedFds = 256;

fs::path Canonical(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::path(path).lexically_normal() : p;
}

// Raises the soft descriptor limit to the hard one and returns how many
// nodes (up to two descriptors each) the handle table may cache.
size_t CacheCapacity(size_t wanted) {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return wanted;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur == RLIM_INFINITY) return wanted;
  const rlim_t spare = rl.rlim_cur > 2 * kReservedFds ? rl.rlim_cur - kReservedFds : kReservedFds;
  return std::clamp<size_t>(spare / 2, 1, wanted);
}

// Checks the export and makes sure the state directory exists outside it.
bool PrepareDirs(const StorageOptions& o, std::string* state_dir, std::string* error) {
  struct stat st;
  if (::stat(o.export_dir.c_str(), &st) != 0) {
    *error = "export " + o.export_dir + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    *error = "export " + o.export_dir + " is not a directory";
    return false;
  }
  *state_dir = o.state_dir.empty() ? DefaultStateDir(o.export_dir) : o.state_dir;
  // Inside the export, clients could read or rewrite the handle log.
  const fs::path exp = Canonical(o.export_dir);
  const fs::path state = Canonical(*state_dir);
  if (std::mismatch(exp.begin(), exp.end(), state.begin(), state.end()).first == exp.end()) {
    *error = "state dir " + *state_dir + " must not be inside the export " + o.export_dir;
    return false;
  }
  if (::mkdir(state_dir->c_str(), 0700) != 0 && errno != EEXIST) {
    *error = "cannot create state dir " + *state_dir + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace

bool ParseLostReplies(const std::string& spec, std::vector<std::pair<std::string, uint32_t>>* out,
                      std::string* error) {
  out->clear();
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    const size_t colon = item.find(':');
    const std::string rpc = item.substr(0, colon);
    const char* count = colon == std::string::npos ? item.data() + item.size() : &item[colon + 1];
    const char* count_end = item.data() + item.size();
    uint32_t n = 0;
    const auto [parsed, ec] = std::from_chars(count, count_end, n);
    if (colon == std::string::npos || ec != std::errc() || parsed != count_end || n == 0) {
      *error = "'" + item + "' is not RPC:N with N a positive count";
      return false;
    }
    if (!StorageService::IsRpcName(rpc)) {
      *error = "unknown RPC '" + rpc + "' (names as in the Storage service, e.g. Mkdir)";
      return false;
    }
    out->emplace_back(rpc, n);
    pos = end + 1;
  }
  return true;
}

std::string DefaultStateDir(const std::string& export_dir) {
  const fs::path exp = Canonical(export_dir);
  return (exp.parent_path() / ("." + exp.filename().string() + ".dfuse-state")).string();
}

StorageServer::StorageServer() = default;

StorageServer::~StorageServer() { Shutdown(); }

std::unique_ptr<StorageServer> StorageServer::Start(const StorageOptions& options,
                                                    std::string* error) {
  if (options.shard_id < 1 || options.shard_id > kMaxShardId) {
    *error = "shard id must be in 1.." + std::to_string(kMaxShardId);
    return nullptr;
  }
  std::string state_dir;
  if (!PrepareDirs(options, &state_dir, error)) return nullptr;

  std::unique_ptr<StorageServer> s(new StorageServer());
  s->table_ = HandleTable::Open(options.export_dir, state_dir, options.shard_id,
                                CacheCapacity(options.max_cached_files), error);
  if (!s->table_) return nullptr;
  ServiceOptions service_options;
  service_options.max_in_flight_per_client = options.max_in_flight_per_client;
  service_options.access = options.access;
  service_options.fencing_key = options.fencing_key;
  if (options.handle_keys) {
    service_options.handle_secret = HandleSecret::OpenOrCreate(state_dir, error);
    if (!service_options.handle_secret) return nullptr;
  }
  s->service_ = std::make_unique<StorageService>(s->table_.get(), &s->stats_, service_options);
  for (const auto& [rpc, count] : options.lost_replies) {
    if (!s->service_->InjectLostReplies(rpc, count)) {
      *error = "cannot lose replies of unknown RPC " + rpc;
      return nullptr;
    }
  }

  const auto credentials = ServerCredentials(options.tls, options.listen, error);
  if (!credentials) return nullptr;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  // gRPC sets SO_REUSEPORT by default: a second server on a busy port would
  // silently share it instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  if (options.threads > 0) {
    // Threads kept polling for calls; gRPC adds workers under load. A
    // ResourceQuota cap would instead fail calls with RESOURCE_EXHAUSTED.
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS,
                                options.threads);
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                                options.threads);
  }
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->server_.reset();
    *error = "cannot listen on " + options.listen;
    return nullptr;
  }
  return s;
}

bool StorageServer::InjectLostReplies(const std::string& rpc, uint32_t count) {
  return service_->InjectLostReplies(rpc, count);
}

void StorageServer::Shutdown() {
  if (!server_) return;
  // gRPC also waits for idle client connections to close until the
  // deadline, so keep it short. Calls still running then lose their reply
  // (UNAVAILABLE) but their handlers run to completion before Wait returns.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  server_.reset();
  table_->Sync();
}

}  // namespace dfuse::storage
