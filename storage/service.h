// The Storage gRPC service: POSIX operations on the exported directory,
// addressed by GFID, with errnos carried back unchanged in `err`.
//
// Every call works relative to a descriptor from the HandleTable with
// *at() calls that never follow a symlink. Data calls (Read, Write,
// Fallocate, SetAttr with a size) need a regular file and fail like
// open(O_NOFOLLOW) on anything else: EISDIR for a directory, ELOOP for a
// symlink, EINVAL for FIFOs, sockets and devices, which the server never
// opens (it would block or touch a device outside the export).
//
// Calls that are not idempotent (Create, Mknod, Mkdir, Symlink, Link,
// Unlink, Rmdir, Rename) go through a ReplyCache when they carry a
// RequestId, so that a client's retry after a lost reply gets the first
// reply instead of applying the call twice.
#ifndef DFUSE_STORAGE_SERVICE_H_
#define DFUSE_STORAGE_SERVICE_H_

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "proto/storage.grpc.pb.h"
#include "storage/access.h"
#include "storage/client_limits.h"
#include "storage/dir_locks.h"
#include "storage/fencing.h"
#include "storage/handle_secret.h"
#include "storage/handle_table.h"
#include "storage/reply_cache.h"
#include "util/caller.h"
#include "util/fencing_key.h"
#include "util/stats.h"
#include "util/tls.h"

namespace dfuse::storage {

// What each client may do.
struct ServiceOptions {
  // Calls one client may have in progress at once (0: no bound).
  size_t max_in_flight_per_client = 0;
  // Export rules by client identity (storage/access.h): by default every
  // client reads and writes as whoever it says, as library users want; the
  // daemon's default squashes root.
  AccessRules access;
  // With a key, a change under a fencing token needs the token's proof of
  // origin for the caller's identity (util/fencing_key.h); EACCES without.
  std::shared_ptr<const FencingKey> fencing_key;
  // With a secret, every GFID handed out carries a key and a call naming a
  // GFID without it gets ESTALE (storage/handle_secret.h).
  std::shared_ptr<const HandleSecret> handle_secret;
};

class StorageService final : public proto::Storage::Service {
 public:
  // `table` and `stats` must outlive the service.
  StorageService(HandleTable* table, StatsRegistry* stats,
                 const ServiceOptions& options = ServiceOptions());

  using Ctx = grpc::ServerContext;
  grpc::Status GetRoot(Ctx*, const proto::RootRequest*, proto::RootReply*) override;
  grpc::Status Lookup(Ctx*, const proto::NameRequest*, proto::EntryReply*) override;
  grpc::Status GetAttr(Ctx*, const proto::GfidRequest*, proto::AttrReply*) override;
  grpc::Status SetAttr(Ctx*, const proto::SetAttrRequest*, proto::AttrReply*) override;
  grpc::Status Create(Ctx*, const proto::MakeRequest*, proto::EntryReply*) override;
  grpc::Status Mknod(Ctx*, const proto::MakeRequest*, proto::EntryReply*) override;
  grpc::Status Mkdir(Ctx*, const proto::MakeRequest*, proto::EntryReply*) override;
  grpc::Status Symlink(Ctx*, const proto::MakeRequest*, proto::EntryReply*) override;
  grpc::Status Link(Ctx*, const proto::LinkRequest*, proto::EntryReply*) override;
  grpc::Status Unlink(Ctx*, const proto::NameRequest*, proto::UnlinkReply*) override;
  grpc::Status Rmdir(Ctx*, const proto::NameRequest*, proto::ErrReply*) override;
  grpc::Status Rename(Ctx*, const proto::RenameRequest*, proto::UnlinkReply*) override;
  grpc::Status Readlink(Ctx*, const proto::GfidRequest*, proto::ReadlinkReply*) override;
  grpc::Status ReadDir(Ctx*, const proto::ReadDirRequest*, proto::ReadDirReply*) override;
  grpc::Status StatFs(Ctx*, const proto::GfidRequest*, proto::StatFsReply*) override;
  grpc::Status Read(Ctx*, const proto::ReadRequest*, proto::ReadReply*) override;
  grpc::Status Write(Ctx*, const proto::WriteRequest*, proto::WriteReply*) override;
  grpc::Status Fsync(Ctx*, const proto::FsyncRequest*, proto::ErrReply*) override;
  grpc::Status Fallocate(Ctx*, const proto::FallocateRequest*, proto::ErrReply*) override;
  grpc::Status SetXattr(Ctx*, const proto::XattrRequest*, proto::ErrReply*) override;
  grpc::Status GetXattr(Ctx*, const proto::XattrRequest*, proto::XattrReply*) override;
  grpc::Status ListXattr(Ctx*, const proto::XattrRequest*, proto::XattrReply*) override;
  grpc::Status RemoveXattr(Ctx*, const proto::XattrRequest*, proto::ErrReply*) override;
  grpc::Status Access(Ctx*, const proto::AccessRequest*, proto::ErrReply*) override;

  // Testing: the next `count` calls of `rpc` (its name in the service
  // definition, e.g. "Mkdir") are applied and then answered with gRPC
  // UNAVAILABLE instead of their reply, as if the reply was lost on the
  // wire. A retry answered from the reply cache is not counted (its call was
  // not applied again) and gets its reply. Replaces an earlier count for
  // `rpc`; false if there is no such RPC.
  bool InjectLostReplies(const std::string& rpc, uint32_t count);
  static bool IsRpcName(const std::string& rpc);

 private:
  enum Rpc {
    kGetRoot,
    kLookup,
    kGetAttr,
    kSetAttr,
    kCreate,
    kMknod,
    kMkdir,
    kSymlink,
    kLink,
    kUnlink,
    kRmdir,
    kRename,
    kReadlink,
    kReadDir,
    kStatFs,
    kRead,
    kWrite,
    kFsync,
    kFallocate,
    kSetXattr,
    kGetXattr,
    kListXattr,
    kRemoveXattr,
    kAccess,
    kNumRpcs
  };
  // One call in progress: timed into the `rpc_<name>` latency and counted
  // against its client's bound on calls in progress. A call not admitted
  // ends at once with refusal(), its reply's err already set if any.
  class Call {
   public:
    Call(Latency* latency, ClientLimits::Slot slot, std::string identity, const ExportRule* rule,
         Caller caller, std::string handle_keys, bool admitted, grpc::Status refusal)
        : time_(latency),
          slot_(std::move(slot)),
          identity_(std::move(identity)),
          rule_(rule),
          caller_(std::move(caller)),
          handle_keys_(std::move(handle_keys)),
          admitted_(admitted),
          refusal_(std::move(refusal)) {}
    bool admitted() const { return admitted_; }
    const grpc::Status& refusal() const { return refusal_; }
    // The caller's certificate identity, "" in plain text.
    const std::string& identity() const { return identity_; }
    // The client's export rule (storage/access.h).
    const ExportRule& rule() const { return *rule_; }
    // The user the call acts for, mapped by the client's export rule.
    const Caller& caller() const { return caller_; }
    // The keys the call names for its GFIDs (util/handle_keys.h).
    const std::string& handle_keys() const { return handle_keys_; }

   private:
    ScopedLatency time_;
    ClientLimits::Slot slot_;
    std::string identity_;
    const ExportRule* rule_;  // owned by the service's AccessRules
    Caller caller_;
    std::string handle_keys_;
    bool admitted_;
    grpc::Status refusal_;
  };
  template <typename Reply>
  Call Begin(Rpc rpc, const Ctx* ctx, Reply* reply) {
    // One certificate lookup per call serves the bound and the access rules.
    std::string identity = ctx != nullptr ? PeerIdentity(*ctx) : "";
    ClientLimits::Slot slot = limits_.Enter(ctx, identity);
    const ExportRule& rule = access_.For(identity);
    grpc::Status refusal;
    Caller caller;
    const int err = Permit(rpc, ctx, identity, rule, static_cast<bool>(slot), &caller, &refusal);
    if (err != 0) reply->set_err(err);
    const bool admitted = err == 0 && refusal.ok();
    return Call(latency_[rpc], std::move(slot), std::move(identity), &rule, std::move(caller),
                HandleKeysOf(ctx), admitted, std::move(refusal));
  }
  // Whether a call of `rpc` from the client `identity`, whose export rule
  // is `rule`, may run, and as whom (*caller): OK and 0 if so; EROFS for a
  // change from a read-only client; EPERM for a user its rule does not
  // allow; a refusing *status for a client over its bound on calls in
  // progress, one with no access, or a malformed caller.
  int Permit(Rpc rpc, const Ctx* ctx, const std::string& identity, const ExportRule& rule,
             bool within_bound, Caller* caller, grpc::Status* status);
  // 0 if the call's caller has `mask` (storage/permission.h) on `node`,
  // EACCES if not, or the errno of reading its attributes into *st (if
  // given, filled in any case for a check that was made).
  int Check(const Call& call, const Node& node, int mask, struct stat* st = nullptr);
  // Check for reading or writing data: as Check, but the file's owner may
  // always (as NFS servers allow, so that a file opened before a chmod
  // stays usable, and pages written back after one still land).
  int CheckData(const Call& call, const Node& node, int mask);
  // Check for the extended attribute `name` (XattrPermission).
  int CheckXattr(const Call& call, const Node& node, const std::string& name, bool change,
                 bool remove);
  // Whether `rpc` changes the export (names, data, attributes).
  static bool Changes(Rpc rpc);
  // The status a call of `rpc` that ran ends with: OK, unless its reply is
  // to be lost (InjectLostReplies).
  grpc::Status Done(Rpc rpc);
  // Runs `execute`, which applies a call that is not idempotent and fills
  // *reply, at most once per request id (see ReplyCache); a retry gets the
  // first run's reply in *reply. Without an id (client_id 0) it just runs.
  // An id reused for another call gets INVALID_ARGUMENT.
  grpc::Status Once(Rpc rpc, const proto::RequestId& id, const google::protobuf::Message& req,
                    google::protobuf::Message* reply, const std::function<void()>& execute);

  // The call's handle keys metadata, "" if none.
  static std::string HandleKeysOf(const Ctx* ctx);
  // Resolves a GFID the call names, with its key if keys are issued
  // (ESTALE without).
  int Resolve(const Call& call, uint64_t gfid, std::shared_ptr<Node>* node);
  // Resolves a GFID that must name a directory (ENOTDIR otherwise).
  int ResolveDir(const Call& call, uint64_t gfid, std::shared_ptr<Node>* node);
  // Resolves a GFID for a data call and checks that it is a regular file.
  int ResolveData(const Call& call, uint64_t gfid, std::shared_ptr<Node>* node);
  // Sets attr's handle key, if keys are issued.
  void IssueKey(proto::Attr* attr) const;
  // Current attributes of `node`, with its key.
  int Stat(const Node& node, proto::Attr* attr);
  // Looks `name` up in `parent` and fills `attr`, with its key.
  int Entry(const Node& parent, const std::string& name, proto::Attr* attr);
  // Create, Mknod, Mkdir and Symlink (`rpc` says which): creates the name
  // in the parent, gives it its owner and fills the reply.
  int Make(const Call& call, Rpc rpc, const proto::MakeRequest& req, proto::EntryReply* reply);
  // Unlink (flags 0) and Rmdir (AT_REMOVEDIR); *unlinked (if not null)
  // gets the removed file's attributes as they were before.
  int Remove(const Call& call, const proto::NameRequest& req, int flags, proto::Attr* unlinked);
  // Rename; *replaced gets the attributes of the file the new name referred
  // to before, if the rename took that name away from it.
  int Move(const Call& call, const proto::RenameRequest& req, proto::Attr* replaced);
  // Whether the call's caller may remove `name` from `dir` (write and
  // search on it, its sticky bit); *victim (if not null) gets the name's
  // attributes. ENOENT if there is no such name (not looked for when the
  // caller is privileged and no victim is asked for).
  int MayRemove(const Call& call, const Node& dir, const std::string& name, proto::Attr* victim);
  // Whether the call's caller may rename `name` in `parent` to `new_name`
  // in `new_parent` (with `flags`), as Linux's may_delete and may_create.
  int MayMove(const Call& call, const Node& parent, const std::string& name,
              const Node& new_parent, const std::string& new_name, uint32_t flags);
  // Gives a file the server just created as root the owner `owner` (with
  // Linux's rule for directories with S_ISGID) and exactly the
  // requested mode; `st` gets its attributes afterwards.
  int Own(const Node& parent, const Node& node, const Caller& owner, const proto::MakeRequest& req,
          struct stat* st);
  // Admits a data-changing call on the regular file `node` (see
  // FencingTable; with a fencing key, its token must come with the proof
  // for the caller, EACCES otherwise), counting refusals. Once admitted,
  // *fd is the file's writable descriptor.
  int Admit(const Call& call, Node* node, uint64_t token, const std::string& proof, int* fd,
            std::unique_lock<std::mutex>* lock);
  // Fills what a durable write under a fencing token hands over (the
  // attributes it left the file with and the bytes changed under the token)
  // and storage's proof of it (WriteReply.handoff). `fence`: Admit's lock.
  void HandOff(const Node& node, const proto::WriteRequest& req,
               const std::unique_lock<std::mutex>& fence, proto::WriteReply* reply);
  // Puts what was written through `fd` on stable storage (Fsync, and a
  // Write that asks for it), with the handles of new names: a client that
  // made a file durable must be able to resolve it after a crash.
  int MakeDurable(int fd, bool datasync);

  HandleTable* const table_;
  FencingTable fencing_;
  DirLocks dir_locks_;  // Remove and Move
  ClientLimits limits_;
  const AccessRules access_;
  const std::shared_ptr<const FencingKey> fencing_key_;
  const std::shared_ptr<const HandleSecret> handle_secret_;
  ReplyCache replies_;
  std::array<std::atomic<uint32_t>, kNumRpcs> lost_replies_{};  // InjectLostReplies
  std::array<Latency*, kNumRpcs> latency_;
  Counter* const fenced_writes_;
  Counter* const unproven_tokens_;
  Counter* const replayed_replies_;
  Counter* const busy_refusals_;
  Counter* const access_refusals_;
  Counter* const permission_refusals_;
  Counter* const bad_handle_keys_;
  Counter* const bytes_read_;
  Counter* const bytes_written_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_SERVICE_H_
