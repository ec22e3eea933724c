// Client side of the storage service: one gRPC channel, calls that return a
// POSIX errno, and transparent waiting while the storage service restarts.
//
// A call whose connection broke is sent again. For the calls that are not
// idempotent (Create, Mknod, Mkdir, Symlink, Link, Unlink, Rmdir, Rename)
// every call carries a fresh RequestId, the same on each of its retries, so
// the service answers a retry of a call it already applied with the first
// reply (its reply cache) instead of EEXIST or ENOENT. That holds while the
// service runs; a retry that reaches a restarted service is applied again.
//
// Every call acts for the thread's current caller (caller_scope.h), and
// names the handle key the service issued for each GFID it uses: the client
// learns keys from the replies that hand GFIDs out and keeps them until
// ForgetHandle (storage/handle_secret.h).
#ifndef DFUSE_IMPL_COMMON_STORAGE_CLIENT_H_
#define DFUSE_IMPL_COMMON_STORAGE_CLIENT_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "proto/storage.grpc.pb.h"
#include "util/stats.h"

namespace dfuse {

struct StorageClientOptions {
  std::string address;  // host:port
  // How long a call waits for an unreachable storage service before it fails
  // with EIO. Long enough to ride out a storage restart.
  std::chrono::milliseconds unavailable_timeout{60000};
  // Emulated network round trip added to every call; the fallback network
  // emulation where netem is unavailable (0 = none).
  std::chrono::microseconds emulated_rtt{0};
  // The channel's credentials (util/tls.h).
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
};

class StorageClient {
 public:
  StorageClient(const StorageClientOptions& options, StatsRegistry* stats);
  StorageClient(const StorageClient&) = delete;
  StorageClient& operator=(const StorageClient&) = delete;

  // Told the GFID of every file this client is about to change on storage
  // (data, attributes, link count, extended attributes), before the call
  // and again after it, whatever its outcome; a file named only by
  // storage's reply (what an unlink or a rename replaced) after it. Set
  // before the first call; runs on the calling thread.
  void OnChange(std::function<void(uint64_t gfid)> listener) { on_change_ = std::move(listener); }

  // Fails fast (within `timeout`) when the service cannot be reached; used at
  // start-up so a wrong address gives a clear error instead of a hang.
  int GetRoot(std::chrono::milliseconds timeout, proto::RootReply* reply, std::string* error);

  // Every call below returns 0 or a positive errno; a transport failure that
  // outlasts unavailable_timeout is reported as EIO.
  int Lookup(uint64_t parent, const std::string& name, proto::Attr* attr);
  int GetAttr(uint64_t gfid, proto::Attr* attr);
  int SetAttr(const proto::SetAttrRequest& req, proto::Attr* attr);
  int Create(const proto::MakeRequest& req, proto::Attr* attr);
  int Mknod(const proto::MakeRequest& req, proto::Attr* attr);
  int Mkdir(const proto::MakeRequest& req, proto::Attr* attr);
  int Symlink(const proto::MakeRequest& req, proto::Attr* attr);
  int Link(uint64_t gfid, uint64_t new_parent, const std::string& new_name, proto::Attr* attr);
  // *unlinked (if not null) gets the file that lost a name: the one
  // removed, or the one the rename replaced (cleared if none did).
  int Unlink(uint64_t parent, const std::string& name, proto::Attr* unlinked = nullptr);
  int Rmdir(uint64_t parent, const std::string& name);
  int Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
             const std::string& new_name, uint32_t flags, proto::Attr* unlinked = nullptr);
  int Readlink(uint64_t gfid, std::string* target);
  int ReadDir(const proto::ReadDirRequest& req, proto::ReadDirReply* reply);
  int StatFs(uint64_t gfid, proto::StatFsReply* reply);
  int Read(const proto::ReadRequest& req, proto::ReadReply* reply);
  int Write(const proto::WriteRequest& req, proto::WriteReply* reply);
  int Fsync(uint64_t gfid, bool datasync);
  int Fallocate(const proto::FallocateRequest& req);
  int SetXattr(const proto::XattrRequest& req);
  int GetXattr(const proto::XattrRequest& req, proto::XattrReply* reply);
  int ListXattr(const proto::XattrRequest& req, proto::XattrReply* reply);
  int RemoveXattr(const proto::XattrRequest& req);
  // 0 if the caller may open `gfid` for `mask` (R_OK, W_OK, X_OK bits).
  int Access(uint64_t gfid, uint32_t mask);

  // Keeps the handle key of `attr`'s GFID, if it has one (every call whose
  // reply hands GFIDs out does this already).
  void Learn(const proto::Attr& attr);
  // No call will name `gfid` again: its handle key is dropped.
  void ForgetHandle(uint64_t gfid);

  // Shutdown: no call, running or future, waits past `deadline` any more.
  void LimitWaitsTo(std::chrono::system_clock::time_point deadline);
  // Shutdown: fails every running call now and every later one at once.
  void CancelAll();

 private:
  template <typename Req, typename Rep>
  using Method = grpc::Status (proto::Storage::Stub::*)(grpc::ClientContext*, const Req&, Rep*);

  // Runs one unary call with waiting, retry and accounting; returns the
  // reply's errno or EIO.
  template <typename Req, typename Rep>
  int Call(const char* name, Method<Req, Rep> method, const Req& req, Rep* rep);
  // Call for a change to file `gfid`, told to the listener before and after.
  template <typename Req, typename Rep>
  int ChangeCall(uint64_t gfid, const char* name, Method<Req, Rep> method, const Req& req,
                 Rep* rep) {
    Changing(gfid);
    const int err = Call(name, method, req, rep);
    Changing(gfid);
    return err;
  }
  // The id of a new call that is not idempotent; its retries reuse it.
  proto::RequestId NewRequestId();
  // Keeps the handle keys a successful reply hands out (its attributes,
  // or its directory entries').
  template <typename Rep>
  void LearnFrom(const Rep& rep);
  void Changing(uint64_t gfid) const {
    if (gfid != 0 && on_change_) on_change_(gfid);
  }
  // The handle keys metadata for `gfids`.
  std::string KeysFor(const std::array<uint64_t, 2>& gfids);

  StorageClientOptions options_;
  const uint64_t client_id_;  // random, non-zero, one per instance
  std::atomic<uint64_t> next_seq_{1};
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Storage::Stub> stub_;
  StatsRegistry* stats_;
  // Nanoseconds since the epoch (system_clock); calls never wait past it.
  std::atomic<int64_t> wait_limit_ns_{INT64_MAX};
  std::mutex inflight_mu_;
  std::set<grpc::ClientContext*> inflight_;  // guarded by inflight_mu_
  bool cancelled_ = false;                   // guarded by inflight_mu_
  Counter* rpc_failures_;
  std::function<void(uint64_t)> on_change_;
  std::mutex keys_mu_;
  std::unordered_map<uint64_t, uint64_t> keys_;  // GFID -> handle key; guarded by keys_mu_
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_STORAGE_CLIENT_H_
