#include "impl/common/client_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace dfuse {

namespace {

constexpr std::string_view kOpNames[] = {
    "lookup",  "forget",     "getattr",   "setattr",   "readlink", "mknod",    "mkdir",
    "unlink",  "rmdir",      "symlink",   "rename",    "link",     "open",     "create",
    "read",    "write",      "flush",     "release",   "fsync",    "opendir",  "readdir",
    "readdirplus", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr",
    "removexattr", "fallocate"};

constexpr char kCapabilityXattr[] = "security.capability";

// How long a reply waits for a moved directory's old dentry to be dropped.
constexpr std::chrono::milliseconds kAliasSettleTimeout{100};
// How long a lookup waits for the moved directories' old dentries queued
// before it (DirAliases::WaitQueuedSettled). Longer than the above: it is
// the retry's chance, and a lookup that itself blocks an invalidation (one
// under the directory lock it needs) only happens right after a move seen
// from another node.
constexpr std::chrono::milliseconds kLookupSettleTimeout{250};

struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_sec--;
    ts.tv_nsec += 1000000000;
  }
  return ts;
}

int64_t ToNs(const struct timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

}  // namespace

int StorageCacheBackend::ReadExtents(uint64_t gfid, const std::vector<Extent>& extents,
                                     std::vector<std::string>* data, uint64_t* file_size) {
  proto::ReadRequest req;
  req.set_gfid(gfid);
  for (const Extent& e : extents) {
    proto::Extent* pe = req.add_extents();
    pe->set_offset(e.offset);
    pe->set_length(e.length);
  }
  proto::ReadReply rep;
  int err = storage_->Read(req, &rep);
  if (err != 0) return err;
  data->assign(rep.data().begin(), rep.data().end());
  *file_size = rep.file_size();
  return 0;
}

int StorageCacheBackend::WriteChunks(uint64_t gfid, std::vector<Chunk> chunks,
                                     const WriteExtras& extras, WriteResult* result) {
  const CallerScope as(writer_ ? writer_(gfid) : CallerScope::Current());
  proto::WriteRequest req;
  req.set_gfid(gfid);
  if (fence_) {
    Fence f = fence_(gfid);
    req.set_fencing_token(f.token);
    req.set_fencing_proof(std::move(f.proof));
  }
  for (Chunk& c : chunks) {
    proto::WriteChunk* pc = req.add_chunks();
    pc->set_offset(c.offset);
    pc->set_data(std::move(c.data));
  }
  if (extras.mtime_ns) req.set_mtime_ns(*extras.mtime_ns);
  req.set_durable(extras.durable);
  proto::WriteReply rep;
  int err = storage_->Write(req, &rep);
  if (err != 0) return err;
  result->file_size = rep.file_size();
  result->mtime_ns = rep.mtime_ns();
  result->after.handoff = std::move(*rep.mutable_handoff());
  result->after.proof = std::move(*rep.mutable_handoff_proof());
  return 0;
}

ClientFs::ClientFs(const CachePolicy& policy, uint64_t root_gfid, StorageClient* storage,
                   BufferCache* cache, ConsistencyPolicy* consistency, FileWriters* writers,
                   StatsRegistry* stats)
    : policy_(policy),
      root_gfid_(root_gfid),
      storage_(storage),
      cache_(cache),
      consistency_(consistency),
      writers_(writers),
      stats_(stats),
      dir_aliases_(stats),
      kept_times_(stats->GetCounter("cache.kept_times")) {
  for (std::string_view op : kOpNames) {
    op_counters_[op] = stats_->GetCounter("fuse." + std::string(op));
  }
}

ClientFs* ClientFs::Self(fuse_req_t req) { return static_cast<ClientFs*>(fuse_req_userdata(req)); }

void ClientFs::Count(std::string_view op) { op_counters_.at(op)->Add(); }

std::optional<Caller> ClientFs::CallerOf(fuse_req_t req, fuse_ino_t ino) {
  if (fuse_req_ctx(req)->pid == 0) return writers_->Of(Gfid(ino));
  return callers_.Of(req);
}

proto::MakeRequest ClientFs::NewMake(fuse_ino_t parent, const char* name, mode_t mode) {
  proto::MakeRequest mreq;
  mreq.set_parent(Gfid(parent));
  mreq.set_name(name);
  mreq.set_mode(mode);
  return mreq;
}

void ClientFs::FillStat(const proto::Attr& attr, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = attr.gfid();
  st->st_mode = attr.mode();
  st->st_nlink = attr.nlink();
  st->st_uid = attr.uid();
  st->st_gid = attr.gid();
  st->st_rdev = attr.rdev();
  st->st_size = static_cast<off_t>(attr.size());
  // Data this node has not written back yet still counts toward the size.
  if (S_ISREG(attr.mode())) st->st_size = cache_->LocalSize(attr.gfid(), attr.size());
  st->st_blocks = static_cast<blkcnt_t>(attr.blocks());
  st->st_blksize = attr.blksize() ? attr.blksize() : kPageSize;
  st->st_atim = ToTimespec(attr.atime_ns());
  st->st_mtim = ToTimespec(attr.mtime_ns());
  st->st_ctim = ToTimespec(attr.ctime_ns());
}

double ClientFs::AttrTimeout(const proto::Attr& attr) const {
  const bool leased = S_ISREG(attr.mode()) || (S_ISDIR(attr.mode()) && policy_.dir_leases);
  if (leased && policy_.leased_attr_timeout >= 0) return policy_.leased_attr_timeout;
  return policy_.attr_timeout;
}

void ClientFs::ObserveAttr(const proto::Attr& attr, bool own) {
  if (!S_ISREG(attr.mode())) return;
  const bool changed_elsewhere =
      cache_->ObserveVersion(attr.gfid(), attr.size(), attr.mtime_ns(), own);
  consistency_->Observed(attr, own, changed_elsewhere);
}

void ClientFs::FillEntry(const proto::Attr& attr, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->ino = Ino(attr.gfid());
  e->generation = attr.generation();
  FillStat(attr, &e->attr);
  e->attr_timeout = AttrTimeout(attr);
  e->entry_timeout = policy_.entry_timeout;
}

void ClientFs::TakeReference(fuse_ino_t parent, const std::string& name, const proto::Attr& attr) {
  inodes_.Ref(attr.gfid(), attr.mode(), [&] {
    cache_->Remember(attr.gfid());
    // Again, after Remember: a forget just before may have dropped the key.
    storage_->Learn(attr);
    consistency_->EntryGiven(attr, parent, name);
    if (S_ISDIR(attr.mode())) dir_aliases_.Seen(Ino(attr.gfid()), parent, name);
  });
}

void ClientFs::DropReferences(fuse_ino_t ino, uint64_t n) {
  const uint64_t gfid = Gfid(ino);
  inodes_.Unref(gfid, n, [&] { DropState(gfid); });
}

void ClientFs::DropState(uint64_t gfid) {
  cache_->Forget(gfid);  // its writer is forgotten once the cache wrote it back
  consistency_->Forgotten(gfid);
  dir_aliases_.Forget(Ino(gfid));
}

int ClientFs::LinkCountChanged(const proto::Attr& file) {
  if (file.gfid() == 0 || !S_ISREG(file.mode())) return 0;
  const uint64_t gfid = file.gfid();
  const int err = consistency_->LinkCountChanged(gfid);
  // Storage names the file it changed. The kernel holds it (it looked the
  // name up first) unless another node put a different file under the name
  // in between; then no FORGET would ever drop what the policy set up.
  inodes_.IfUnreferenced(gfid, [&] { DropState(gfid); });
  return err;
}

void ClientFs::ReplyEntry(fuse_req_t req, fuse_ino_t parent, const std::string& name,
                          const proto::Attr& attr) {
  TakeReference(parent, name, attr);
  proto::Attr given = attr;
  if (S_ISDIR(attr.mode())) dir_aliases_.WaitSettled(Ino(attr.gfid()), kAliasSettleTimeout);
  if (S_ISREG(attr.mode())) consistency_->BeforeEntryReply(&given);
  fuse_entry_param e;
  FillEntry(given, &e);
  fuse_reply_entry(req, &e);
}

void ClientFs::ReplyAttr(fuse_req_t req, const proto::Attr& attr, double timeout) {
  struct stat st;
  FillStat(attr, &st);
  fuse_reply_attr(req, &st, timeout >= 0 ? timeout : AttrTimeout(attr));
}

void ClientFs::ReplyMake(fuse_req_t req, fuse_ino_t parent, const std::string& name, int err,
                         const proto::Attr& attr) {
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ObserveAttr(attr, /*own=*/true);
  ReplyEntry(req, parent, name, attr);
}

void ClientFs::Init(void* userdata, fuse_conn_info* conn) {
  auto* self = static_cast<ClientFs*>(userdata);
  const CachePolicy& p = self->policy_;
  auto want = [conn](unsigned cap, bool on) {
    if (on && (conn->capable & cap)) {
      conn->want |= cap;
    } else {
      conn->want &= ~cap;
    }
  };
  want(FUSE_CAP_WRITEBACK_CACHE, p.writeback_cache);
  want(FUSE_CAP_AUTO_INVAL_DATA, p.auto_inval_data);
  // O_TRUNC and suid clearing are left to the kernel, which turns them into
  // SETATTR: one code path for every way a file shrinks or changes mode.
  want(FUSE_CAP_ATOMIC_O_TRUNC, false);
  want(FUSE_CAP_HANDLE_KILLPRIV, false);
  want(FUSE_CAP_ASYNC_READ, true);
  want(FUSE_CAP_PARALLEL_DIROPS, true);
  want(FUSE_CAP_READDIRPLUS, true);
  want(FUSE_CAP_READDIRPLUS_AUTO, true);
  want(FUSE_CAP_EXPLICIT_INVAL_DATA, false);
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
  spdlog::info("FUSE session: protocol {}.{}, writeback_cache={}, mode={}", conn->proto_major,
               conn->proto_minor, (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0, p.mode);
}

void ClientFs::Destroy(void* userdata) {
  auto* self = static_cast<ClientFs*>(userdata);
  int err = self->cache_->FlushAll();
  if (err) spdlog::error("write-back at unmount failed: errno {}", err);
}

void ClientFs::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("lookup");
  proto::Attr attr;
  int err = self->storage_->Lookup(self->Gfid(parent), name, &attr);
  // Most lookups come from path walks, which hold no directory lock: the
  // moment for the invalidations of moved directories to take the locks
  // they need, among them the one a rename's ESTALE retry walks through.
  // A lookup that finds a directory still being invalidated is most likely
  // the syscall that holds the lock that invalidation needs (it found the
  // move, or its kernel looked the name up twice): it waits only for that
  // one, and briefly (ReplyEntry).
  const bool moving =
      err == 0 && S_ISDIR(attr.mode()) && self->dir_aliases_.Pending(self->Ino(attr.gfid()));
  if (!moving) self->dir_aliases_.WaitQueuedSettled(kLookupSettleTimeout);
  if (err == ENOENT && self->policy_.negative_timeout > 0) {
    fuse_entry_param e;
    std::memset(&e, 0, sizeof(e));  // ino 0: a cacheable negative entry
    e.entry_timeout = self->policy_.negative_timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  self->ObserveAttr(attr, /*own=*/false);
  self->ReplyEntry(req, parent, name, attr);
}

void ClientFs::Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  ClientFs* self = Self(req);
  self->Count("forget");
  self->DropReferences(ino, nlookup);
  fuse_reply_none(req);
}

void ClientFs::ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  ClientFs* self = Self(req);
  for (size_t i = 0; i < count; i++) {
    self->Count("forget");
    self->DropReferences(forgets[i].ino, forgets[i].nlookup);
  }
  fuse_reply_none(req);
}

int ClientFs::AttrOf(uint64_t gfid, proto::Attr* attr, double* timeout,
                     std::unique_ptr<ConsistencyPolicy::Hold>* hold) {
  auto fetch = [this, gfid](proto::Attr* a) {
    const int err = consistency_->HandedOver(gfid, a) ? 0 : storage_->GetAttr(gfid, a);
    if (err == 0) ObserveAttr(*a, /*own=*/false);
    return err;
  };
  *timeout = -1;
  const int err = inodes_.IsRegular(gfid) ? consistency_->GetAttr(gfid, fetch, attr, timeout, hold)
                                          : fetch(attr);
  if (err == 0 && *timeout < 0) *timeout = AttrTimeout(*attr);
  return err;
}

int ClientFs::AttrOf(uint64_t gfid, struct stat* st, double* timeout) {
  std::unique_ptr<ConsistencyPolicy::Hold> hold;
  proto::Attr attr;
  const int err = AttrOf(gfid, &attr, timeout, &hold);
  if (err == 0) FillStat(attr, st);
  return err;
}

void ClientFs::GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("getattr");
  std::unique_ptr<ConsistencyPolicy::Hold> hold;  // kept until the reply is sent
  proto::Attr attr;
  double timeout = -1;
  const int err = self->AttrOf(self->Gfid(ino), &attr, &timeout, &hold);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  self->ReplyAttr(req, attr, timeout);
}

void ClientFs::SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* in, int to_set,
                       fuse_file_info* fi) {
  ClientFs* self = Self(req);
  if (self->KeepKernelTimes(req, ino, in, to_set, fi)) return;
  // The kernel writes a file's times back from its own threads, as root
  // (write_inode): that acts for the file's writer, as its data does.
  constexpr int kTimes = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                         FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  const bool kernel_times = (to_set & ~kTimes) == 0 && ctx->uid == 0 && IsKernelThread(ctx->pid);
  const CallerScope as(kernel_times ? self->writers_->Of(self->Gfid(ino))
                                    : self->CallerOf(req, ino));
  self->Count("setattr");
  const uint64_t gfid = self->Gfid(ino);
  proto::SetAttrRequest sreq;
  sreq.set_gfid(gfid);
  uint32_t valid = 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    valid |= proto::SETATTR_MODE;
    sreq.set_mode(in->st_mode);
  }
  if (to_set & FUSE_SET_ATTR_UID) {
    valid |= proto::SETATTR_UID;
    sreq.set_uid(in->st_uid);
  }
  if (to_set & FUSE_SET_ATTR_GID) {
    valid |= proto::SETATTR_GID;
    sreq.set_gid(in->st_gid);
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    valid |= proto::SETATTR_SIZE;
    sreq.set_size(static_cast<uint64_t>(in->st_size));
  }
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    valid |= proto::SETATTR_ATIME_NOW;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    valid |= proto::SETATTR_ATIME;
    sreq.set_atime_ns(ToNs(in->st_atim));
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    valid |= proto::SETATTR_MTIME_NOW;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    valid |= proto::SETATTR_MTIME;
    sreq.set_mtime_ns(ToNs(in->st_mtim));
  }
  sreq.set_valid(valid);
  if (valid & (proto::SETATTR_MTIME | proto::SETATTR_MTIME_NOW)) self->cache_->DropTimes(gfid);
  std::unique_ptr<ConsistencyPolicy::Hold> hold;
  // All of a regular file's attributes count as its data for consistency:
  // changing any of them is a write (leased modes revoke other nodes'
  // cached copies).
  const bool regular = self->inodes_.IsRegular(gfid);
  int err = 0;
  if ((valid & proto::SETATTR_SIZE) || regular) {
    err = self->consistency_->Enter(gfid, ConsistencyPolicy::Access::kWrite, &hold);
  }
  if (err == 0 && (valid & ~proto::SETATTR_SIZE) != 0 && regular) {
    // Data written before the change reaches storage before it, as the
    // kernel writes its own pages back before such a SETATTR: written back
    // later, it would set a later mtime over an explicit one, or clear the
    // set-ID bits a chmod just set.
    err = self->cache_->Flush(gfid);
  }
  proto::Attr attr;
  if (err == 0) {
    // Taken after Enter: the token is the WRITE lease's (dfuse's kernel
    // holds it while it sends a size change).
    Fence fence = self->consistency_->WriteFence(gfid);
    sreq.set_fencing_token(fence.token);
    sreq.set_fencing_proof(std::move(fence.proof));
    if (valid & proto::SETATTR_SIZE) {
      // Dirty bytes below the new end must reach storage in order with the
      // truncate; bytes past it are dropped.
      self->cache_->Truncate(gfid, sreq.size());
    }
    err = self->storage_->SetAttr(sreq, &attr);
  }
  // truncate(2) announces itself like a write(2), and the announcement ends
  // however the truncate does: a policy waits for announced writes to end.
  if (valid & proto::SETATTR_SIZE) self->consistency_->WriteDone(gfid, {fuse_req_ctx(req)->pid});
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  self->ObserveAttr(attr, /*own=*/true);
  self->ReplyAttr(req, attr);
}

bool ClientFs::KeepKernelTimes(fuse_req_t req, fuse_ino_t ino, const struct stat* in, int to_set,
                               const fuse_file_info* fi) {
  // A write-back cache kernel writes a file's mtime (and ctime, which
  // storage cannot set) back after starting its page writes, with the file
  // handle of a writer, and does not read the reply (fuse_flush_times). A
  // user's utimensat(2) never carries a file handle. The times go to
  // storage with the file's data, in the same call and after it, instead of
  // in one of their own: sent alone, they could also reach storage before
  // the page writes they were sent beside, whose write then sets a later
  // mtime.
  constexpr int kFlushTimes = FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME;
  const uint64_t gfid = Gfid(ino);
  if (!policy_.writeback_cache || fi == nullptr || to_set != kFlushTimes ||
      !inodes_.IsRegular(gfid)) {
    return false;
  }
  cache_->KeepTimes(gfid, ToNs(in->st_mtim));
  Count("setattr");
  kept_times_->Add();
  struct stat st = *in;  // the kernel's own times; nothing else is read
  st.st_ino = gfid;
  st.st_mode = S_IFREG;
  fuse_reply_attr(req, &st, 0);
  return true;
}

void ClientFs::Readlink(fuse_req_t req, fuse_ino_t ino) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("readlink");
  std::string target;
  int err = self->storage_->Readlink(self->Gfid(ino), &target);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_readlink(req, target.c_str());
}

void ClientFs::Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                     dev_t rdev) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("mknod");
  proto::MakeRequest mreq = self->NewMake(parent, name, mode);
  mreq.set_rdev(rdev);
  proto::Attr attr;
  int err = S_ISREG(mode) ? self->storage_->Create(mreq, &attr) : self->storage_->Mknod(mreq, &attr);
  self->ReplyMake(req, parent, name, err, attr);
}

void ClientFs::Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("mkdir");
  proto::MakeRequest mreq = self->NewMake(parent, name, mode);
  proto::Attr attr;
  int err = self->storage_->Mkdir(mreq, &attr);
  self->ReplyMake(req, parent, name, err, attr);
}

void ClientFs::Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("symlink");
  proto::MakeRequest mreq = self->NewMake(parent, name, 0);
  mreq.set_target(link);
  proto::Attr attr;
  int err = self->storage_->Symlink(mreq, &attr);
  self->ReplyMake(req, parent, name, err, attr);
}

void ClientFs::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("link");
  proto::Attr attr;
  int err = self->storage_->Link(self->Gfid(ino), self->Gfid(newparent), newname, &attr);
  if (err == 0) err = self->LinkCountChanged(attr);
  self->ReplyMake(req, newparent, newname, err, attr);
}

void ClientFs::Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("unlink");
  proto::Attr unlinked;
  int err = self->storage_->Unlink(self->Gfid(parent), name, &unlinked);
  if (err == 0) err = self->LinkCountChanged(unlinked);
  fuse_reply_err(req, err);
}

void ClientFs::Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("rmdir");
  fuse_reply_err(req, self->storage_->Rmdir(self->Gfid(parent), name));
}

void ClientFs::Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                      const char* newname, unsigned int flags) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("rename");
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  proto::Attr replaced;
  int err = self->storage_->Rename(self->Gfid(parent), name, self->Gfid(newparent), newname, flags,
                                   &replaced);
  if (err == 0) {
    // The kernel moves its entries when it sees the reply.
    self->dir_aliases_.Renamed(parent, name, newparent, newname, (flags & RENAME_EXCHANGE) != 0);
    err = self->LinkCountChanged(replaced);
  }
  fuse_reply_err(req, err);
}

void ClientFs::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("open");
  const uint64_t gfid = self->Gfid(ino);
  fi->fh = 0;  // the storage service is stateless: files are addressed by GFID
  fi->keep_cache = self->policy_.keep_cache;
  int err = self->CheckOpen(gfid, fi->flags);
  if (err == 0) err = self->consistency_->Open(gfid, fuse_req_ctx(req)->pid, fi);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) self->writers_->Opened(gfid, CallerScope::Current());
  self->consistency_->Opened(gfid, fi->flags);
  if (fuse_reply_open(req, fi) != 0) {
    self->consistency_->Closed(gfid, fi->flags);  // the open was interrupted
  }
}

int ClientFs::CheckOpen(uint64_t gfid, int flags) {
  const std::optional<Caller>& caller = CallerScope::Current();
  if (!root_squashed_ || !caller || caller->uid != 0) return 0;
  uint32_t mask = (flags & O_ACCMODE) == O_WRONLY ? W_OK : R_OK;
  if ((flags & O_ACCMODE) == O_RDWR || (flags & O_TRUNC)) mask |= W_OK;
  return storage_->Access(gfid, mask);
}

void ClientFs::Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                      fuse_file_info* fi) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, parent));
  self->Count("create");
  proto::MakeRequest mreq = self->NewMake(parent, name, mode);
  mreq.set_exclusive((fi->flags & O_EXCL) != 0);
  proto::Attr attr;
  int err = self->storage_->Create(mreq, &attr);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  self->ObserveAttr(attr, /*own=*/true);
  self->TakeReference(parent, name, attr);
  fi->fh = 0;
  fi->keep_cache = self->policy_.keep_cache;
  self->writers_->Opened(attr.gfid(), CallerScope::Current());
  self->consistency_->Opened(attr.gfid(), fi->flags);
  proto::Attr given = attr;
  self->consistency_->BeforeEntryReply(&given);  // may be an existing file's
  fuse_entry_param e;
  self->FillEntry(given, &e);
  if (fuse_reply_create(req, &e, fi) != 0) self->consistency_->Closed(attr.gfid(), fi->flags);
}

void ClientFs::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("read");
  const uint64_t gfid = self->Gfid(ino);
  std::unique_ptr<ConsistencyPolicy::Hold> hold;
  const ConsistencyPolicy::Io io{fuse_req_ctx(req)->pid, static_cast<uint64_t>(off), size};
  int err = self->consistency_->EnterRead(gfid, io, &hold);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  std::string data;
  err = self->cache_->Read(gfid, static_cast<uint64_t>(off), size, &data);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_buf(req, data.data(), data.size());
}

void ClientFs::Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                     fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("write");
  const uint64_t gfid = self->Gfid(ino);
  std::unique_ptr<ConsistencyPolicy::Hold> hold;
  int err = self->consistency_->Enter(gfid, ConsistencyPolicy::Access::kWrite, &hold);
  if (err == 0) err = self->cache_->Write(gfid, static_cast<uint64_t>(off), buf, size);
  ConsistencyPolicy::Io written{fuse_req_ctx(req)->pid};
  if (err == 0) {
    written.offset = static_cast<uint64_t>(off);
    written.length = size;
  }
  self->consistency_->WriteDone(gfid, written);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_write(req, size);
}

void ClientFs::Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("flush");
  // close(): write back so that the next open on any node sees the data,
  // and report data lost since (a failed revoke write-back, a fenced write).
  const uint64_t gfid = self->Gfid(ino);
  const int err = self->policy_.flush_on_close ? self->cache_->Flush(gfid) : 0;
  const int lost = self->cache_->TakeWriteError(gfid);
  fuse_reply_err(req, err != 0 ? err : lost);
}

void ClientFs::Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ClientFs* self = Self(req);
  self->Count("release");
  self->consistency_->Closed(self->Gfid(ino), fi->flags);
  fuse_reply_err(req, 0);
}

void ClientFs::Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("fsync");
  const uint64_t gfid = self->Gfid(ino);
  // The write-back itself makes the file durable, in the same call; with
  // nothing to write back now, what earlier write-backs sent must still be
  // made durable.
  bool durable = false;
  int err = self->cache_->FlushDurable(gfid, &durable);
  if (err == 0 && !durable) err = self->storage_->Fsync(gfid, datasync != 0);
  const int lost = self->cache_->TakeWriteError(gfid);
  fuse_reply_err(req, err != 0 ? err : lost);
}

void ClientFs::OpenDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Self(req)->Count("opendir");
  fi->fh = 0;  // offsets are the storage directory's own cookies
  fuse_reply_open(req, fi);
}

void ClientFs::ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Self(req)->Count("readdir");
  Self(req)->DoReadDir(req, ino, size, off, /*plus=*/false);
}

void ClientFs::ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           fuse_file_info*) {
  Self(req)->Count("readdirplus");
  Self(req)->DoReadDir(req, ino, size, off, /*plus=*/true);
}

void ClientFs::DoReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  const CallerScope as(CallerOf(req, ino));
  proto::ReadDirRequest dreq;
  dreq.set_gfid(Gfid(ino));
  dreq.set_offset(static_cast<uint64_t>(off));
  // Rough entries-per-buffer estimate; entries that do not fit are simply
  // returned again by the next call, which starts at the last one sent.
  dreq.set_max_entries(static_cast<uint32_t>(std::max<size_t>(size / (plus ? 160 : 32), 4)));
  dreq.set_plus(plus);
  proto::ReadDirReply rep;
  int err = storage_->ReadDir(dreq, &rep);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  std::string buf(size, '\0');
  size_t used = 0;
  for (const proto::DirEntry& d : rep.entries()) {
    const off_t next = static_cast<off_t>(d.next_offset());
    size_t len;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      if (d.has_attr()) {
        proto::Attr given = d.attr();
        if (S_ISREG(given.mode())) consistency_->BeforeEntryReply(&given);
        FillEntry(given, &e);
      } else {  // "." and "..": listed, but no lookup reference is handed out
        e.attr.st_ino = d.gfid();
        e.attr.st_mode = d.type() << 12;
      }
      len = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name().c_str(), &e,
                                   next);
      if (len > size - used) break;
      if (d.has_attr()) {
        ObserveAttr(d.attr(), /*own=*/false);
        TakeReference(ino, d.name(), d.attr());
      }
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = d.gfid();
      st.st_mode = d.type() << 12;
      len = fuse_add_direntry(req, buf.data() + used, size - used, d.name().c_str(), &st, next);
      if (len > size - used) break;
    }
    used += len;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ClientFs::ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  Self(req)->Count("releasedir");
  fuse_reply_err(req, 0);
}

void ClientFs::FsyncDir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("fsyncdir");
  fuse_reply_err(req, self->storage_->Fsync(self->Gfid(ino), datasync != 0));
}

void ClientFs::StatFs(fuse_req_t req, fuse_ino_t ino) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("statfs");
  proto::StatFsReply rep;
  int err = self->storage_->StatFs(self->Gfid(ino), &rep);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct statvfs sv;
  std::memset(&sv, 0, sizeof(sv));
  sv.f_bsize = rep.bsize();
  sv.f_frsize = rep.frsize();
  sv.f_blocks = rep.blocks();
  sv.f_bfree = rep.bfree();
  sv.f_bavail = rep.bavail();
  sv.f_files = rep.files();
  sv.f_ffree = rep.ffree();
  sv.f_favail = rep.favail();
  sv.f_namemax = rep.namemax();
  fuse_reply_statfs(req, &sv);
}

bool ClientFs::RefusedXattrs(fuse_req_t req) {
  if (policy_.xattrs) return false;
  fuse_reply_err(req, ENOSYS);  // the kernel stops asking
  return true;
}

void ClientFs::SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                        size_t size, int flags) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("setxattr");
  if (self->RefusedXattrs(req)) return;
  const uint64_t gfid = self->Gfid(ino);
  proto::XattrRequest xreq;
  xreq.set_gfid(gfid);
  xreq.set_name(name);
  xreq.set_value(std::string(value, size));
  xreq.set_flags(flags);
  int err = self->storage_->SetXattr(xreq);
  if (std::strcmp(name, kCapabilityXattr) == 0) self->inodes_.SetCapabilityState(gfid, -1);
  fuse_reply_err(req, err);
}

void ClientFs::GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("getxattr");
  if (self->RefusedXattrs(req)) return;
  const uint64_t gfid = self->Gfid(ino);
  const bool capability = std::strcmp(name, kCapabilityXattr) == 0;
  if (capability) {
    // The kernel asks at the start of every write(2).
    int err = self->consistency_->WriteStarting(gfid, fuse_req_ctx(req)->pid);
    if (err != 0) {
      fuse_reply_err(req, err);
      return;
    }
  }
  if (capability && self->inodes_.CapabilityState(gfid) == 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  proto::XattrRequest xreq;
  xreq.set_gfid(gfid);
  xreq.set_name(name);
  xreq.set_size(static_cast<uint32_t>(size));
  proto::XattrReply rep;
  int err = self->storage_->GetXattr(xreq, &rep);
  if (capability && (err == 0 || err == ENODATA)) {
    self->inodes_.SetCapabilityState(gfid, err == 0 ? 1 : 0);
  }
  if (err != 0) {
    fuse_reply_err(req, err);
  } else if (size == 0) {
    fuse_reply_xattr(req, rep.size());
  } else {
    fuse_reply_buf(req, rep.value().data(), rep.value().size());
  }
}

void ClientFs::ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("listxattr");
  if (self->RefusedXattrs(req)) return;
  proto::XattrRequest xreq;
  xreq.set_gfid(self->Gfid(ino));
  xreq.set_size(static_cast<uint32_t>(size));
  proto::XattrReply rep;
  int err = self->storage_->ListXattr(xreq, &rep);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else if (size == 0) {
    fuse_reply_xattr(req, rep.size());
  } else {
    fuse_reply_buf(req, rep.value().data(), rep.value().size());
  }
}

void ClientFs::RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("removexattr");
  if (self->RefusedXattrs(req)) return;
  const uint64_t gfid = self->Gfid(ino);
  proto::XattrRequest xreq;
  xreq.set_gfid(gfid);
  xreq.set_name(name);
  int err = self->storage_->RemoveXattr(xreq);
  if (std::strcmp(name, kCapabilityXattr) == 0) self->inodes_.SetCapabilityState(gfid, -1);
  fuse_reply_err(req, err);
}

void ClientFs::Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         fuse_file_info*) {
  ClientFs* self = Self(req);
  const CallerScope as(self->CallerOf(req, ino));
  self->Count("fallocate");
  const uint64_t gfid = self->Gfid(ino);
  // Storage changes the bytes and maybe the size itself: write back first,
  // then forget what was cached.
  std::unique_ptr<ConsistencyPolicy::Hold> hold;
  int err = self->consistency_->Enter(gfid, ConsistencyPolicy::Access::kWrite, &hold);
  if (err == 0) err = self->cache_->Flush(gfid);
  if (err == 0) {
    proto::FallocateRequest freq;
    freq.set_gfid(gfid);
    Fence fence = self->consistency_->WriteFence(gfid);
    freq.set_fencing_token(fence.token);
    freq.set_fencing_proof(std::move(fence.proof));
    freq.set_mode(mode);
    freq.set_offset(static_cast<uint64_t>(offset));
    freq.set_length(static_cast<uint64_t>(length));
    err = self->storage_->Fallocate(freq);
  }
  self->consistency_->WriteDone(gfid, {fuse_req_ctx(req)->pid});  // announced like a write(2)
  if (err == 0) {
    self->cache_->Invalidate(gfid);
    proto::Attr attr;
    err = self->storage_->GetAttr(gfid, &attr);
    if (err == 0) self->ObserveAttr(attr, /*own=*/true);
  }
  fuse_reply_err(req, err);
}

const fuse_lowlevel_ops& ClientFs::Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof(o));
    o.init = Init;
    o.destroy = Destroy;
    o.lookup = Lookup;
    o.forget = Forget;
    o.forget_multi = ForgetMulti;
    o.getattr = GetAttr;
    o.setattr = SetAttr;
    o.readlink = Readlink;
    o.mknod = Mknod;
    o.mkdir = Mkdir;
    o.unlink = Unlink;
    o.rmdir = Rmdir;
    o.symlink = Symlink;
    o.rename = Rename;
    o.link = Link;
    o.open = Open;
    o.create = Create;
    o.read = Read;
    o.write = Write;
    o.flush = Flush;
    o.release = Release;
    o.fsync = Fsync;
    o.opendir = OpenDir;
    o.readdir = ReadDir;
    o.readdirplus = ReadDirPlus;
    o.releasedir = ReleaseDir;
    o.fsyncdir = FsyncDir;
    o.statfs = StatFs;
    o.setxattr = SetXattr;
    o.getxattr = GetXattr;
    o.listxattr = ListXattr;
    o.removexattr = RemoveXattr;
    o.fallocate = Fallocate;
    return o;
  }();
  return ops;
}

}  // namespace dfuse
