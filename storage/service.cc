// Service plumbing and the calls on attributes: GetRoot, Lookup, GetAttr,
// SetAttr, Readlink, StatFs.
#include "storage/service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <iterator>

#include <spdlog/spdlog.h>

#include "storage/attr.h"
#include "storage/names.h"
#include "storage/permission.h"
#include "util/handle_keys.h"

namespace dfuse::storage {
namespace {

constexpr const char* kRpcNames[] = {
    "GetRoot", "Lookup", "GetAttr",   "SetAttr",  "Create",   "Mknod",     "Mkdir",      "Symlink",
    "Link",    "Unlink", "Rmdir",     "Rename",   "Readlink", "ReadDir",   "StatFs",     "Read",
    "Write",   "Fsync",  "Fallocate", "SetXattr", "GetXattr", "ListXattr", "RemoveXattr",
    "Access"};

}  // namespace

StorageService::StorageService(HandleTable* table, StatsRegistry* stats,
                               const ServiceOptions& options)
    : table_(table),
      limits_(options.max_in_flight_per_client),
      access_(options.access),
      fencing_key_(options.fencing_key),
      handle_secret_(options.handle_secret),
      fenced_writes_(stats->GetCounter("fenced_writes")),
      unproven_tokens_(stats->GetCounter("unproven_tokens")),
      replayed_replies_(stats->GetCounter("replayed_replies")),
      busy_refusals_(stats->GetCounter("busy_refusals")),
      access_refusals_(stats->GetCounter("access_refusals")),
      permission_refusals_(stats->GetCounter("permission_refusals")),
      bad_handle_keys_(stats->GetCounter("bad_handle_keys")),
      bytes_read_(stats->GetCounter("bytes_read")),
      bytes_written_(stats->GetCounter("bytes_written")) {
  static_assert(std::size(kRpcNames) == kNumRpcs);
  for (int i = 0; i < kNumRpcs; i++) {
    latency_[i] = stats->GetLatency(std::string("rpc_") + kRpcNames[i]);
  }
}

bool StorageService::IsRpcName(const std::string& rpc) {
  return std::find(std::begin(kRpcNames), std::end(kRpcNames), rpc) != std::end(kRpcNames);
}

namespace {

// Whether `caller` may make the changes `req` asks of a file with `st`, as
// Linux's setattr_prepare decides: owner or group changes and chmod need
// ownership (EPERM), a new size write permission (EACCES). *mode gets the
// mode to set, without S_ISGID where the caller is not in the file's group.
// Two deviations: explicit times need ownership or write permission, since a
// write-back cache sends a writer's mtime explicitly; and a chmod that only
// clears set-ID bits a write would clear needs write permission, since that
// is how a client's kernel clears them when its user writes (FUSE sends the
// kernel's forced kill of the bits as a plain chmod).
int MaySetAttr(const Caller& caller, const struct stat& st, const proto::SetAttrRequest& req,
               mode_t* mode) {
  const uint32_t valid = req.valid();
  *mode = req.mode() & 07777;
  if (Privileged(caller)) return 0;
  const bool owner = caller.uid == st.st_uid;
  if ((valid & proto::SETATTR_UID) && !(owner && req.uid() == st.st_uid)) return EPERM;
  if ((valid & proto::SETATTR_GID) &&
      !(owner && (req.gid() == st.st_gid || InGroup(caller, req.gid())))) {
    return EPERM;
  }
  if ((valid & proto::SETATTR_MODE) && !owner) {
    // Only some of the set-ID bits a write would clear, nothing else.
    const mode_t now = st.st_mode & 07777;
    const bool clears_set_id = *mode != now && (*mode | SetIdBitsToDrop(now)) == now;
    if (!clears_set_id || Permission(caller, st, kMayWrite) != 0) return EPERM;
  } else if (valid & proto::SETATTR_MODE) {
    const gid_t gid = (valid & proto::SETATTR_GID) ? req.gid() : st.st_gid;
    if (!InGroup(caller, gid)) *mode &= ~S_ISGID;
  }
  const bool times = valid & (proto::SETATTR_ATIME | proto::SETATTR_MTIME |
                              proto::SETATTR_ATIME_NOW | proto::SETATTR_MTIME_NOW);
  if ((times || (valid & proto::SETATTR_SIZE)) && !owner) {
    return Permission(caller, st, kMayWrite);
  }
  return 0;
}

}  // namespace

bool StorageService::InjectLostReplies(const std::string& rpc, uint32_t count) {
  const auto it = std::find(std::begin(kRpcNames), std::end(kRpcNames), rpc);
  if (it == std::end(kRpcNames)) return false;
  lost_replies_[it - std::begin(kRpcNames)].store(count);
  return true;
}

grpc::Status StorageService::Done(Rpc rpc) {
  std::atomic<uint32_t>& left = lost_replies_[rpc];
  uint32_t n = left.load(std::memory_order_relaxed);
  while (n > 0 && !left.compare_exchange_weak(n, n - 1)) {
  }
  if (n == 0) return grpc::Status::OK;
  // gRPC sends no reply message with a status other than OK.
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "reply lost (injected fault)");
}

bool StorageService::Changes(Rpc rpc) {
  switch (rpc) {
    case kSetAttr:
    case kCreate:
    case kMknod:
    case kMkdir:
    case kSymlink:
    case kLink:
    case kUnlink:
    case kRmdir:
    case kRename:
    case kWrite:
    case kFallocate:
    case kSetXattr:
    case kRemoveXattr:
      return true;
    default:
      return false;
  }
}

int StorageService::Permit(Rpc rpc, const Ctx* ctx, const std::string& identity,
                           const ExportRule& rule, bool within_bound, Caller* caller,
                           grpc::Status* status) {
  if (!within_bound) {
    busy_refusals_->Add();
    *status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                           "too many calls in progress from this client "
                           "(--max-in-flight-per-client)");
    return 0;
  }
  switch (rule.access) {
    case storage::Access::kReadWrite:
      break;
    case storage::Access::kReadOnly:
      if (!Changes(rpc)) break;
      access_refusals_->Add();
      return EROFS;
    case storage::Access::kNone:
      access_refusals_->Add();
      *status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                             "client '" + identity + "' may not use this export (--access)");
      return 0;
  }
  // A call that names no user acts for the anonymous one.
  Caller claimed{rule.anon_uid, rule.anon_gid, {}};
  if (ctx != nullptr) {
    const auto& metadata = ctx->client_metadata();
    const auto it = metadata.find(kCallerKey);
    if (it != metadata.end() &&
        !DecodeCaller(std::string_view(it->second.data(), it->second.size()), &claimed)) {
      *status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             std::string("malformed ") + kCallerKey + " metadata");
      return 0;
    }
  }
  if (int err = rule.Map(claimed, caller); err != 0) {
    permission_refusals_->Add();
    spdlog::debug("refused {} from client '{}' as {}: not an allowed user", kRpcNames[rpc],
                  identity, EncodeCaller(claimed));
    return err;
  }
  return 0;
}

int StorageService::Check(const Call& call, const Node& node, int mask, struct stat* st) {
  // An unsquashed root needs no look at the file, but to execute it.
  if (st == nullptr && Privileged(call.caller()) &&
      (!(mask & kMayExec) || S_ISDIR(node.type()))) {
    return 0;
  }
  struct stat local;
  if (st == nullptr) st = &local;
  if (int err = node.Stat(st); err != 0) return err;
  if (Permission(call.caller(), *st, mask) == 0) return 0;
  permission_refusals_->Add();
  return EACCES;
}

grpc::Status StorageService::Once(Rpc rpc, const proto::RequestId& id,
                                  const google::protobuf::Message& req,
                                  google::protobuf::Message* reply,
                                  const std::function<void()>& execute) {
  if (id.client_id() == 0) {
    execute();
    return Done(rpc);
  }
  // A retry resends the very request, which serializes to the same bytes;
  // a different call under the same id almost surely does not.
  const uint64_t fingerprint = std::hash<std::string>()(req.SerializeAsString());
  std::string bytes;
  const auto outcome = replies_.Run(
      {id.client_id(), id.seq()}, rpc, fingerprint,
      [&] {
        execute();
        return reply->SerializeAsString();
      },
      &bytes);
  switch (outcome) {
    case ReplyCache::Outcome::kExecuted:
      return Done(rpc);
    case ReplyCache::Outcome::kReplayed:
      replayed_replies_->Add();
      if (!reply->ParseFromString(bytes)) {
        return grpc::Status(grpc::StatusCode::INTERNAL, "cached reply does not parse");
      }
      return grpc::Status::OK;
    case ReplyCache::Outcome::kMismatch:
      break;
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "request id " + std::to_string(id.client_id()) + ":" +
                          std::to_string(id.seq()) + " was used by a different call");
}

std::string StorageService::HandleKeysOf(const Ctx* ctx) {
  if (ctx == nullptr) return "";
  const auto& metadata = ctx->client_metadata();
  const auto it = metadata.find(kHandleKeysKey);
  return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
}

int StorageService::Resolve(const Call& call, uint64_t gfid, std::shared_ptr<Node>* node) {
  if (int err = table_->Resolve(gfid, node); err != 0) return err;
  if (!handle_secret_) return 0;
  uint64_t key;
  if (FindHandleKey(call.handle_keys(), gfid, &key) &&
      key == handle_secret_->KeyOf(gfid, (*node)->generation())) {
    return 0;
  }
  bad_handle_keys_->Add();
  node->reset();
  return ESTALE;
}

void StorageService::IssueKey(proto::Attr* attr) const {
  if (handle_secret_) attr->set_handle_key(handle_secret_->KeyOf(attr->gfid(), attr->generation()));
}

int StorageService::ResolveDir(const Call& call, uint64_t gfid, std::shared_ptr<Node>* node) {
  if (int err = Resolve(call, gfid, node); err != 0) return err;
  return S_ISDIR((*node)->type()) ? 0 : ENOTDIR;
}

int StorageService::ResolveData(const Call& call, uint64_t gfid, std::shared_ptr<Node>* node) {
  if (int err = Resolve(call, gfid, node); err != 0) return err;
  const mode_t type = (*node)->type();
  if (S_ISREG(type)) return 0;
  if (S_ISDIR(type)) return EISDIR;
  if (S_ISLNK(type)) return ELOOP;
  return EINVAL;
}

int StorageService::Stat(const Node& node, proto::Attr* attr) {
  struct stat st;
  if (int err = node.Stat(&st); err != 0) return err;
  FillAttr(st, node.gfid(), node.generation(), attr);
  IssueKey(attr);
  return 0;
}

int StorageService::Entry(const Node& parent, const std::string& name, proto::Attr* attr) {
  std::shared_ptr<Node> node;
  struct stat st;
  if (int err = table_->Lookup(parent, name.c_str(), &node, &st); err != 0) return err;
  FillAttr(st, node->gfid(), node->generation(), attr);
  IssueKey(attr);
  return 0;
}

int StorageService::Admit(const Call& call, Node* node, uint64_t token, const std::string& proof,
                          int* fd, std::unique_lock<std::mutex>* lock) {
  if (fencing_key_ && token != 0 &&
      !fencing_key_->Verify(node->gfid(), token, call.identity(), proof)) {
    // Made up, another client's, or from a manager with another key.
    unproven_tokens_->Add();
    spdlog::warn("refused fencing token {:#x} on {:#x} from client '{}': no valid proof (do the "
                 "lease managers have this --fencing-key?)",
                 token, node->gfid(), call.identity());
    return EACCES;
  }
  int data_fd;
  if (int err = node->DataFd(true, &data_fd); err != 0) return err;
  const int err = fencing_.Admit(node->gfid(), node->generation(), data_fd, token, lock);
  if (err == ESTALE) fenced_writes_->Add();
  if (err == 0) *fd = data_fd;
  return err;
}

int StorageService::CheckData(const Call& call, const Node& node, int mask) {
  if (Privileged(call.caller())) return 0;
  struct stat st;
  if (int err = node.Stat(&st); err != 0) return err;
  if (st.st_uid == call.caller().uid || Permission(call.caller(), st, mask) == 0) return 0;
  permission_refusals_->Add();
  return EACCES;
}

grpc::Status StorageService::GetRoot(Ctx* ctx, const proto::RootRequest*, proto::RootReply* reply) {
  const Call call = Begin(kGetRoot, ctx, reply);
  if (!call.admitted()) return call.refusal();
  reply->set_shard_id(table_->shard_id());
  reply->set_root_squashed(call.rule().SquashesRoot());
  reply->set_err(Stat(*table_->root(), reply->mutable_attr()));
  return Done(kGetRoot);
}

grpc::Status StorageService::Lookup(Ctx* ctx, const proto::NameRequest* req,
                                    proto::EntryReply* reply) {
  const Call call = Begin(kLookup, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> parent;
  int err = ResolveDir(call, req->parent(), &parent);
  if (err == 0) err = ValidateName(req->name());
  if (err == 0) err = Check(call, *parent, kMayExec);
  if (err == 0) err = Entry(*parent, req->name(), reply->mutable_attr());
  reply->set_err(err);
  return Done(kLookup);
}

grpc::Status StorageService::GetAttr(Ctx* ctx, const proto::GfidRequest* req,
                                     proto::AttrReply* reply) {
  const Call call = Begin(kGetAttr, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  if (err == 0) err = Stat(*node, reply->mutable_attr());
  reply->set_err(err);
  return Done(kGetAttr);
}

// Applies the changes in the order that keeps each one: owner first (chown
// clears set-id bits), then mode, then size (truncation updates mtime), then
// times. A failure stops there; earlier changes stay, as with separate
// syscalls on Linux.
grpc::Status StorageService::SetAttr(Ctx* ctx, const proto::SetAttrRequest* req,
                                     proto::AttrReply* reply) {
  const Call call = Begin(kSetAttr, ctx, reply);
  if (!call.admitted()) return call.refusal();
  const uint32_t valid = req->valid();
  std::shared_ptr<Node> node;
  std::unique_lock<std::mutex> fence;
  int fd = -1;
  int err = Resolve(call, req->gfid(), &node);
  mode_t mode = req->mode() & 07777;
  if (err == 0 && !Privileged(call.caller())) {
    struct stat st;
    err = node->Stat(&st);
    if (err == 0 && (err = MaySetAttr(call.caller(), st, *req, &mode)) != 0) {
      permission_refusals_->Add();
    }
  }
  // Admitted before any change, so a refused call changes nothing.
  if (err == 0 && (valid & proto::SETATTR_SIZE)) {
    err = ResolveData(call, req->gfid(), &node);
    if (err == 0 && req->size() > static_cast<uint64_t>(INT64_MAX)) err = EINVAL;
    if (err == 0) {
      err = Admit(call, node.get(), req->fencing_token(), req->fencing_proof(), &fd, &fence);
    }
    // Bytes past the new size go; growing adds zeros past the old end,
    // where no cache holds data (and a node that sees a new size drops
    // its pages anyway).
    if (err == 0) fencing_.Changing(node->gfid(), req->size(), ExtentSet::kToEnd, fence);
  }
  if (err == 0 && (valid & (proto::SETATTR_UID | proto::SETATTR_GID))) {
    const uid_t uid = (valid & proto::SETATTR_UID) ? req->uid() : static_cast<uid_t>(-1);
    const gid_t gid = (valid & proto::SETATTR_GID) ? req->gid() : static_cast<gid_t>(-1);
    if (::fchownat(node->path_fd(), "", uid, gid, AT_EMPTY_PATH) != 0) err = errno;
  }
  if (err == 0 && (valid & proto::SETATTR_MODE)) {
    // Linux has no permission bits on symlinks (fchmodat2 with
    // AT_SYMLINK_NOFOLLOW says so); chmod() on the proc path would be
    // refused or, on older kernels, act on the link.
    if (S_ISLNK(node->type())) {
      err = EOPNOTSUPP;
    } else if (::chmod(node->proc_path().c_str(), mode) != 0) {
      err = errno;
    }
  }
  if (err == 0 && (valid & proto::SETATTR_SIZE) && !Privileged(call.caller())) {
    err = DropPrivileges(fd);
  }
  if (err == 0 && (valid & proto::SETATTR_SIZE) &&
      ::ftruncate(fd, static_cast<off_t>(req->size())) != 0) {
    err = errno;
  }
  const bool atime = valid & (proto::SETATTR_ATIME | proto::SETATTR_ATIME_NOW);
  const bool mtime = valid & (proto::SETATTR_MTIME | proto::SETATTR_MTIME_NOW);
  if (err == 0 && (atime || mtime)) {
    struct timespec ts[2];
    ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
    if (valid & proto::SETATTR_ATIME_NOW) {
      ts[0].tv_nsec = UTIME_NOW;
    } else if (valid & proto::SETATTR_ATIME) {
      ts[0] = FromNanos(req->atime_ns());
    }
    if (valid & proto::SETATTR_MTIME_NOW) {
      ts[1].tv_nsec = UTIME_NOW;
    } else if (valid & proto::SETATTR_MTIME) {
      ts[1] = FromNanos(req->mtime_ns());
    }
    if (::utimensat(node->path_fd(), "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      err = errno;
    }
  }
  if (err == 0) err = Stat(*node, reply->mutable_attr());
  reply->set_err(err);
  return Done(kSetAttr);
}

grpc::Status StorageService::Readlink(Ctx* ctx, const proto::GfidRequest* req,
                                      proto::ReadlinkReply* reply) {
  const Call call = Begin(kReadlink, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  if (err == 0 && !S_ISLNK(node->type())) err = EINVAL;
  if (err == 0) {
    char buf[PATH_MAX];
    const ssize_t n = ::readlinkat(node->path_fd(), "", buf, sizeof(buf));
    if (n < 0) {
      err = errno;
    } else {
      reply->set_target(buf, static_cast<size_t>(n));
    }
  }
  reply->set_err(err);
  return Done(kReadlink);
}

grpc::Status StorageService::StatFs(Ctx* ctx, const proto::GfidRequest* req,
                                    proto::StatFsReply* reply) {
  const Call call = Begin(kStatFs, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  struct statvfs sv;
  if (err == 0 && ::fstatvfs(node->path_fd(), &sv) != 0) err = errno;
  if (err == 0) {
    reply->set_bsize(sv.f_bsize);
    reply->set_frsize(sv.f_frsize);
    reply->set_blocks(sv.f_blocks);
    reply->set_bfree(sv.f_bfree);
    reply->set_bavail(sv.f_bavail);
    reply->set_files(sv.f_files);
    reply->set_ffree(sv.f_ffree);
    reply->set_favail(sv.f_favail);
    reply->set_namemax(sv.f_namemax);
  }
  reply->set_err(err);
  return Done(kStatFs);
}

grpc::Status StorageService::Access(Ctx* ctx, const proto::AccessRequest* req,
                                    proto::ErrReply* reply) {
  const Call call = Begin(kAccess, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  if (err == 0 && (req->mask() & ~uint32_t{kMayRead | kMayWrite | kMayExec}) != 0) err = EINVAL;
  if (err == 0 && (req->mask() & kMayWrite) &&
      call.rule().access == storage::Access::kReadOnly) {
    err = EROFS;
  }
  if (err == 0) err = Check(call, *node, static_cast<int>(req->mask()));
  reply->set_err(err);
  return Done(kAccess);
}

}  // namespace dfuse::storage
