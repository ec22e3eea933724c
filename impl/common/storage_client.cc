#include "impl/common/storage_client.h"

#include <array>
#include <cerrno>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "impl/common/caller_scope.h"
#include "util/handle_keys.h"

namespace dfuse {

namespace {

constexpr int kMaxMessageBytes = 64 << 20;

// A reply's errno, for the reply types that have one.
template <typename Rep>
int ErrOf(const Rep& rep) {
  return rep.err();
}

// Random, so that a restarted client (or another one) never reuses the ids
// of an earlier instance; never 0, which means "no id".
uint64_t NewClientId() {
  std::random_device rd;
  for (;;) {
    const uint64_t id = (uint64_t{rd()} << 32) ^ rd();
    if (id != 0) return id;
  }
}

}  // namespace

StorageClient::StorageClient(const StorageClientOptions& options, StatsRegistry* stats)
    : options_(options),
      client_id_(NewClientId()),
      stats_(stats),
      rpc_failures_(stats->GetCounter("rpc.transport_failures")) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Reconnect quickly after a storage restart instead of backing off for
  // tens of seconds. The "min reconnect backoff" is gRPC's minimum connect
  // timeout, the time one attempt (TCP, TLS handshake, HTTP/2 settings) may
  // take: it stays at gRPC's 20 s. At 100 ms a loaded machine never
  // finished a handshake in time, and a client waited its whole
  // --connect-timeout without ever connecting.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  channel_ = grpc::CreateCustomChannel(options_.address, options_.credentials, args);
  stub_ = proto::Storage::NewStub(channel_);
}

namespace {

// The GFIDs each request names (0: none).
using Gfids = std::array<uint64_t, 2>;
Gfids GfidsOf(const proto::NameRequest& r) { return {r.parent(), 0}; }
Gfids GfidsOf(const proto::MakeRequest& r) { return {r.parent(), 0}; }
Gfids GfidsOf(const proto::LinkRequest& r) { return {r.gfid(), r.new_parent()}; }
Gfids GfidsOf(const proto::RenameRequest& r) { return {r.parent(), r.new_parent()}; }
template <typename Req>
Gfids GfidsOf(const Req& r) {
  return {r.gfid(), 0};
}

}  // namespace

void StorageClient::Learn(const proto::Attr& attr) {
  if (attr.handle_key() == 0) return;
  std::lock_guard<std::mutex> l(keys_mu_);
  keys_[attr.gfid()] = attr.handle_key();
}

void StorageClient::ForgetHandle(uint64_t gfid) {
  std::lock_guard<std::mutex> l(keys_mu_);
  keys_.erase(gfid);
}

template <typename Rep>
void StorageClient::LearnFrom(const Rep& rep) {
  if constexpr (requires { rep.attr(); }) Learn(rep.attr());
  if constexpr (requires { rep.entries(); }) {
    for (const proto::DirEntry& e : rep.entries()) {
      if (e.has_attr()) Learn(e.attr());
    }
  }
}

std::string StorageClient::KeysFor(const std::array<uint64_t, 2>& gfids) {
  std::vector<std::pair<uint64_t, uint64_t>> keys;
  {
    std::lock_guard<std::mutex> l(keys_mu_);
    for (uint64_t gfid : gfids) {
      if (gfid == 0) continue;
      auto it = keys_.find(gfid);
      if (it != keys_.end()) keys.emplace_back(gfid, it->second);
    }
  }
  return EncodeHandleKeys(keys);
}

template <typename Req, typename Rep>
int StorageClient::Call(const char* name, Method<Req, Rep> method, const Req& req, Rep* rep) {
  ScopedLatency timer(stats_->GetLatency(std::string("rpc.") + name));
  const auto limit = std::chrono::system_clock::time_point(
      std::chrono::nanoseconds(wait_limit_ns_.load(std::memory_order_relaxed)));
  const auto give_up =
      std::min(std::chrono::system_clock::now() + options_.unavailable_timeout, limit);
  const std::optional<Caller>& as = CallerScope::Current();
  const std::string caller = as ? EncodeCaller(*as) : std::string();
  const std::string keys = KeysFor(GfidsOf(req));
  for (int attempt = 0;; attempt++) {
    if (options_.emulated_rtt.count() > 0) std::this_thread::sleep_for(options_.emulated_rtt);
    grpc::ClientContext ctx;
    // Wait for the channel instead of failing fast: a restarting storage
    // service looks like a slow call, not an I/O error.
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(give_up);
    if (as) ctx.AddMetadata(kCallerKey, caller);
    if (!keys.empty()) ctx.AddMetadata(kHandleKeysKey, keys);
    {
      std::lock_guard<std::mutex> l(inflight_mu_);
      if (cancelled_) return EIO;
      inflight_.insert(&ctx);
    }
    rep->Clear();
    grpc::Status st = (stub_.get()->*method)(&ctx, req, rep);
    {
      std::lock_guard<std::mutex> l(inflight_mu_);
      inflight_.erase(&ctx);
    }
    if (st.ok()) {
      const int err = ErrOf(*rep);
      if (err == 0) LearnFrom(*rep);
      return err;
    }
    rpc_failures_->Add();
    if (st.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      spdlog::error("storage {} refused: {}", name, st.error_message());
      return EACCES;  // this client may not use the export (storage's --access)
    }
    const bool retryable = st.error_code() == grpc::StatusCode::UNAVAILABLE;
    if (!retryable || std::chrono::system_clock::now() >= give_up) {
      spdlog::error("storage {} failed: {} ({})", name, st.error_message(),
                    static_cast<int>(st.error_code()));
      return EIO;
    }
    // The connection broke during the call (e.g. the service was killed):
    // back off briefly and retry once the channel is ready again.
    spdlog::warn("storage {} interrupted ({}), retrying", name, st.error_message());
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * (attempt + 1), 500)));
  }
}

proto::RequestId StorageClient::NewRequestId() {
  proto::RequestId id;
  id.set_client_id(client_id_);
  id.set_seq(next_seq_.fetch_add(1, std::memory_order_relaxed));
  return id;
}

void StorageClient::LimitWaitsTo(std::chrono::system_clock::time_point deadline) {
  wait_limit_ns_.store(
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count());
}

void StorageClient::CancelAll() {
  std::lock_guard<std::mutex> l(inflight_mu_);
  cancelled_ = true;
  for (grpc::ClientContext* ctx : inflight_) ctx->TryCancel();
}

int StorageClient::GetRoot(std::chrono::milliseconds timeout, proto::RootReply* reply,
                           std::string* error) {
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::Status st = stub_->GetRoot(&ctx, proto::RootRequest(), reply);
  if (!st.ok()) {
    if (st.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      *error = "the storage service at " + options_.address + " refused this client: " +
               st.error_message();
      return EACCES;
    }
    // A refused TLS handshake looks like no answer: the channel keeps retrying.
    *error = "cannot reach the storage service at " + options_.address + ": " +
             (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                  ? "no answer within " + std::to_string(timeout.count()) +
                        " ms (is it running, and do both sides agree on TLS: --tls-ca, "
                        "--tls-cert, --tls-key?)"
                  : st.error_message());
    return EIO;
  }
  if (reply->err() != 0) *error = "storage service refused GetRoot: errno " + std::to_string(reply->err());
  if (reply->err() == 0) Learn(reply->attr());
  return reply->err();
}

int StorageClient::Lookup(uint64_t parent, const std::string& name, proto::Attr* attr) {
  proto::NameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  proto::EntryReply rep;
  int err = Call("Lookup", &proto::Storage::Stub::Lookup, req, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::GetAttr(uint64_t gfid, proto::Attr* attr) {
  proto::GfidRequest req;
  req.set_gfid(gfid);
  proto::AttrReply rep;
  int err = Call("GetAttr", &proto::Storage::Stub::GetAttr, req, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::SetAttr(const proto::SetAttrRequest& req, proto::Attr* attr) {
  proto::AttrReply rep;
  int err = ChangeCall(req.gfid(), "SetAttr", &proto::Storage::Stub::SetAttr, req, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::Create(const proto::MakeRequest& req, proto::Attr* attr) {
  proto::MakeRequest once = req;
  *once.mutable_request_id() = NewRequestId();
  proto::EntryReply rep;
  int err = Call("Create", &proto::Storage::Stub::Create, once, &rep);
  Changing(rep.attr().gfid());  // an existing file, opened (and maybe truncated)
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::Mknod(const proto::MakeRequest& req, proto::Attr* attr) {
  proto::MakeRequest once = req;
  *once.mutable_request_id() = NewRequestId();
  proto::EntryReply rep;
  int err = Call("Mknod", &proto::Storage::Stub::Mknod, once, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::Mkdir(const proto::MakeRequest& req, proto::Attr* attr) {
  proto::MakeRequest once = req;
  *once.mutable_request_id() = NewRequestId();
  proto::EntryReply rep;
  int err = Call("Mkdir", &proto::Storage::Stub::Mkdir, once, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::Symlink(const proto::MakeRequest& req, proto::Attr* attr) {
  proto::MakeRequest once = req;
  *once.mutable_request_id() = NewRequestId();
  proto::EntryReply rep;
  int err = Call("Symlink", &proto::Storage::Stub::Symlink, once, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::Link(uint64_t gfid, uint64_t new_parent, const std::string& new_name,
                        proto::Attr* attr) {
  proto::LinkRequest req;
  req.set_gfid(gfid);
  req.set_new_parent(new_parent);
  req.set_new_name(new_name);
  *req.mutable_request_id() = NewRequestId();
  proto::EntryReply rep;
  int err = ChangeCall(gfid, "Link", &proto::Storage::Stub::Link, req, &rep);
  if (err == 0) *attr = rep.attr();
  return err;
}

int StorageClient::Unlink(uint64_t parent, const std::string& name, proto::Attr* unlinked) {
  proto::NameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  *req.mutable_request_id() = NewRequestId();
  proto::UnlinkReply rep;
  const int err = Call("Unlink", &proto::Storage::Stub::Unlink, req, &rep);
  Changing(rep.unlinked().gfid());
  if (unlinked != nullptr) *unlinked = rep.unlinked();
  return err;
}

int StorageClient::Rmdir(uint64_t parent, const std::string& name) {
  proto::NameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  *req.mutable_request_id() = NewRequestId();
  proto::ErrReply rep;
  return Call("Rmdir", &proto::Storage::Stub::Rmdir, req, &rep);
}

int StorageClient::Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                          const std::string& new_name, uint32_t flags, proto::Attr* unlinked) {
  proto::RenameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  req.set_new_parent(new_parent);
  req.set_new_name(new_name);
  req.set_flags(flags);
  *req.mutable_request_id() = NewRequestId();
  proto::UnlinkReply rep;
  const int err = Call("Rename", &proto::Storage::Stub::Rename, req, &rep);
  Changing(rep.unlinked().gfid());
  if (unlinked != nullptr) *unlinked = rep.unlinked();
  return err;
}

int StorageClient::Readlink(uint64_t gfid, std::string* target) {
  proto::GfidRequest req;
  req.set_gfid(gfid);
  proto::ReadlinkReply rep;
  int err = Call("Readlink", &proto::Storage::Stub::Readlink, req, &rep);
  if (err == 0) *target = rep.target();
  return err;
}

int StorageClient::ReadDir(const proto::ReadDirRequest& req, proto::ReadDirReply* reply) {
  return Call("ReadDir", &proto::Storage::Stub::ReadDir, req, reply);
}

int StorageClient::StatFs(uint64_t gfid, proto::StatFsReply* reply) {
  proto::GfidRequest req;
  req.set_gfid(gfid);
  return Call("StatFs", &proto::Storage::Stub::StatFs, req, reply);
}

int StorageClient::Read(const proto::ReadRequest& req, proto::ReadReply* reply) {
  return Call("Read", &proto::Storage::Stub::Read, req, reply);
}

int StorageClient::Write(const proto::WriteRequest& req, proto::WriteReply* reply) {
  return ChangeCall(req.gfid(), "Write", &proto::Storage::Stub::Write, req, reply);
}

int StorageClient::Fsync(uint64_t gfid, bool datasync) {
  proto::FsyncRequest req;
  req.set_gfid(gfid);
  req.set_datasync(datasync);
  proto::ErrReply rep;
  return Call("Fsync", &proto::Storage::Stub::Fsync, req, &rep);
}

int StorageClient::Fallocate(const proto::FallocateRequest& req) {
  proto::ErrReply rep;
  return ChangeCall(req.gfid(), "Fallocate", &proto::Storage::Stub::Fallocate, req, &rep);
}

int StorageClient::SetXattr(const proto::XattrRequest& req) {
  proto::ErrReply rep;
  return ChangeCall(req.gfid(), "SetXattr", &proto::Storage::Stub::SetXattr, req, &rep);
}

int StorageClient::GetXattr(const proto::XattrRequest& req, proto::XattrReply* reply) {
  return Call("GetXattr", &proto::Storage::Stub::GetXattr, req, reply);
}

int StorageClient::ListXattr(const proto::XattrRequest& req, proto::XattrReply* reply) {
  return Call("ListXattr", &proto::Storage::Stub::ListXattr, req, reply);
}

int StorageClient::RemoveXattr(const proto::XattrRequest& req) {
  proto::ErrReply rep;
  return ChangeCall(req.gfid(), "RemoveXattr", &proto::Storage::Stub::RemoveXattr, req, &rep);
}

int StorageClient::Access(uint64_t gfid, uint32_t mask) {
  proto::AccessRequest req;
  req.set_gfid(gfid);
  req.set_mask(mask);
  proto::ErrReply rep;
  return Call("Access", &proto::Storage::Stub::Access, req, &rep);
}

}  // namespace dfuse
