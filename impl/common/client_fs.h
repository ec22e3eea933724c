// The shared FUSE client core: every low-level FUSE operation, translated to
// storage calls through the userspace buffer cache.
#ifndef DFUSE_IMPL_COMMON_CLIENT_FS_H_
#define DFUSE_IMPL_COMMON_CLIENT_FS_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "impl/common/buffer_cache.h"
#include "impl/common/caller_scope.h"
#include "impl/common/consistency.h"
#include "impl/common/dir_aliases.h"
#include "impl/common/inode_table.h"
#include "impl/common/policy.h"
#include "impl/common/storage_client.h"
#include "util/stats.h"

namespace dfuse {

// Adapts the storage client to the buffer cache's backend interface.
class StorageCacheBackend : public CacheBackend {
 public:
  explicit StorageCacheBackend(StorageClient* storage) : storage_(storage) {}
  // The fencing token and proof of every write of a file
  // (ConsistencyPolicy::WriteFence).
  void set_fence_source(std::function<Fence(uint64_t gfid)> fence) { fence_ = std::move(fence); }
  // The user each file's data is written as (FileWriters::Of).
  void set_writer_source(std::function<std::optional<Caller>(uint64_t gfid)> writer) {
    writer_ = std::move(writer);
  }
  // Called once the cache holds nothing of a forgotten file.
  void set_drop_hook(std::function<void(uint64_t gfid)> hook) { drop_hook_ = std::move(hook); }
  void Dropped(uint64_t gfid) override {
    if (drop_hook_) drop_hook_(gfid);
  }
  int ReadExtents(uint64_t gfid, const std::vector<Extent>& extents,
                  std::vector<std::string>* data, uint64_t* file_size) override;
  int WriteChunks(uint64_t gfid, std::vector<Chunk> chunks, const WriteExtras& extras,
                  WriteResult* result) override;

 private:
  StorageClient* storage_;
  std::function<Fence(uint64_t gfid)> fence_;
  std::function<std::optional<Caller>(uint64_t gfid)> writer_;
  std::function<void(uint64_t gfid)> drop_hook_;
};

// The core knows no mode: where modes differ it asks `consistency`.
class ClientFs {
 public:
  // `writers` learns who opens each file for writing.
  ClientFs(const CachePolicy& policy, uint64_t root_gfid, StorageClient* storage,
           BufferCache* cache, ConsistencyPolicy* consistency, FileWriters* writers,
           StatsRegistry* stats);
  ClientFs(const ClientFs&) = delete;
  ClientFs& operator=(const ClientFs&) = delete;

  // The operation table; pass `this` as the session's userdata.
  static const fuse_lowlevel_ops& Ops();

  const CachePolicy& policy() const { return policy_; }

  // The storage service squashes this client's root (RootReply): root's
  // opens are checked there first, since the kernel lets root open anything.
  void set_root_squashed(bool squashed) { root_squashed_ = squashed; }

  // The session is up: start the work that sends notifications to it.
  void Start(fuse_session* se) { dir_aliases_.Start(se); }

  // What a GETATTR of file gfid would be answered with now: its attributes
  // and how long the kernel may trust them, in seconds (for a policy whose
  // own replies carry them: ConsistencyPolicy::AttrSource). Returns 0 or an
  // errno.
  int AttrOf(uint64_t gfid, struct stat* st, double* timeout);

 private:
  uint64_t Gfid(fuse_ino_t ino) const { return GfidOf(ino, root_gfid_); }
  fuse_ino_t Ino(uint64_t gfid) const { return NodeIdOf(gfid, root_gfid_); }

  void Count(std::string_view op);
  // The user the request on `ino` acts for. Requests the kernel makes on
  // its own with no process (write-back of dirty pages) act for the file's
  // writer; so does its write-back of times from a kernel thread, which
  // SetAttr tells apart itself (that takes a /proc read, kept off every
  // other request).
  std::optional<Caller> CallerOf(fuse_req_t req, fuse_ino_t ino);
  void FillStat(const proto::Attr& attr, struct stat* st);
  void FillEntry(const proto::Attr& attr, fuse_entry_param* e);
  // The storage service's say on an open with `flags` by a squashed root
  // (root_squashed_); 0 for everyone else, whom the kernel checked.
  int CheckOpen(uint64_t gfid, int flags);
  // The kernel now holds one more lookup reference to the file, as `name`
  // in `parent`.
  void TakeReference(fuse_ino_t parent, const std::string& name, const proto::Attr& attr);
  void DropReferences(fuse_ino_t ino, uint64_t n);
  // Drops what is kept for a file the kernel no longer holds.
  void DropState(uint64_t gfid);
  // This node changed `file`'s link count on storage (link, unlink, a
  // rename that replaced it); `file` is unset if no file lost or gained a
  // name. Returns 0 or the errno for the request (see the policy's hook).
  int LinkCountChanged(const proto::Attr& file);
  // Replies to a request that handed the kernel `name` in `parent`.
  void ReplyEntry(fuse_req_t req, fuse_ino_t parent, const std::string& name,
                  const proto::Attr& attr);
  // A GETATTR's answer (the policy's, else storage's), *timeout in seconds;
  // *hold is kept until the answer is handed to the kernel.
  int AttrOf(uint64_t gfid, proto::Attr* attr, double* timeout,
             std::unique_ptr<ConsistencyPolicy::Hold>* hold);
  // `timeout` in seconds; negative: AttrTimeout(attr).
  void ReplyAttr(fuse_req_t req, const proto::Attr& attr, double timeout = -1);
  double AttrTimeout(const proto::Attr& attr) const;
  void ObserveAttr(const proto::Attr& attr, bool own);
  // A create/mknod/mkdir/symlink request for `name` in `parent` (the new
  // file belongs to the storage call's caller).
  proto::MakeRequest NewMake(fuse_ino_t parent, const char* name, mode_t mode);
  void ReplyMake(fuse_req_t req, fuse_ino_t parent, const std::string& name, int err,
                 const proto::Attr& attr);
  // Answers the kernel's write-back of a file's times itself, keeping them
  // for the file's data; false when the SETATTR is not that write-back.
  bool KeepKernelTimes(fuse_req_t req, fuse_ino_t ino, const struct stat* in, int to_set,
                       const fuse_file_info* fi);

  // Handlers, one per FUSE operation.
  static ClientFs* Self(fuse_req_t req);
  static void Init(void* userdata, fuse_conn_info* conn);
  static void Destroy(void* userdata);
  static void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
  static void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets);
  static void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                      fuse_file_info* fi);
  static void Readlink(fuse_req_t req, fuse_ino_t ino);
  static void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  static void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  static void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
  static void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                     const char* newname, unsigned int flags);
  static void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  static void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                     fuse_file_info* fi);
  static void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                    fuse_file_info* fi);
  static void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  static void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          fuse_file_info* fi);
  static void ReleaseDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void FsyncDir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  static void StatFs(fuse_req_t req, fuse_ino_t ino);
  // Answers ENOSYS and returns true where the policy serves no xattrs.
  bool RefusedXattrs(fuse_req_t req);
  static void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                       size_t size, int flags);
  static void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  static void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  static void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name);
  static void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                        fuse_file_info* fi);

  void DoReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus);

  const CachePolicy policy_;
  const uint64_t root_gfid_;
  StorageClient* const storage_;
  BufferCache* const cache_;
  ConsistencyPolicy* const consistency_;
  FileWriters* const writers_;
  StatsRegistry* const stats_;
  RequestCallers callers_;
  bool root_squashed_ = false;  // set before the session starts
  InodeTable inodes_;
  DirAliases dir_aliases_;
  std::unordered_map<std::string_view, Counter*> op_counters_;  // fixed after construction
  Counter* const kept_times_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_CLIENT_FS_H_
