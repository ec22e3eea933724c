// A FUSE file system that passes every request through to a local directory:
// no storage service, no leases, no cache of its own. It is the ceiling the
// benchmarks hold the three modes against (issue 13): what FUSE itself
// reaches on the machine, with the kernel's write-back cache or without.
//
// Each inode the kernel knows is an O_PATH descriptor of the source file,
// keyed by the source's (device, inode) so that hard links and repeated
// lookups share one entry; the node id handed to the kernel is the entry's
// address, and the entry lives until the kernel forgets every lookup of it.
#ifndef DFUSE_WORKLOADS_PASSTHROUGH_PASSTHROUGH_FS_H_
#define DFUSE_WORKLOADS_PASSTHROUGH_PASSTHROUGH_FS_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace dfuse {

struct PassthroughOptions {
  std::string source;      // the directory served
  bool writeback = true;   // ask for the kernel's write-back cache
  double timeout_s = 1.0;  // entry and attribute timeout
  // Serve extended attributes. Without them the kernel learns at the first
  // GETXATTR that there are none and stops asking, which spares the write
  // path the security.capability lookup it makes before every write(2) on a
  // FUSE mount (the modes serve xattrs and pay it).
  bool xattr = true;
};

class PassthroughFs {
 public:
  // Opens `options.source`; nullptr and `*error` if it is not a directory.
  static std::unique_ptr<PassthroughFs> Open(const PassthroughOptions& options, std::string* error);
  ~PassthroughFs();

  PassthroughFs(const PassthroughFs&) = delete;
  PassthroughFs& operator=(const PassthroughFs&) = delete;

  // The operations, to pass to fuse_session_new() with this object as
  // userdata.
  static const fuse_lowlevel_ops& Ops();

 private:
  struct Inode {
    int fd = -1;  // O_PATH
    dev_t dev = 0;
    ino_t ino = 0;
    uint64_t lookups = 0;
  };

  PassthroughFs(const PassthroughOptions& options, int root_fd, const struct stat& root);

  Inode* Get(fuse_ino_t ino);
  // Looks `name` up under `parent` and fills `*e`, counting one lookup.
  int Lookup(fuse_ino_t parent, const char* name, fuse_entry_param* e);
  void Forget(fuse_ino_t ino, uint64_t n);

  static PassthroughFs* Of(fuse_req_t req);
  static void Init(void* userdata, fuse_conn_info* conn);
  static void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
  static void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets);
  static void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid,
                        fuse_file_info* fi);
  static void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  static void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                       const char* newname, unsigned int flags);
  static void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                       fuse_file_info* fi);
  static void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off,
                         fuse_file_info* fi);
  static void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  static void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OpStatfs(fuse_req_t req, fuse_ino_t ino);
  // false, having answered ENOSYS, when xattrs are off.
  static bool ServesXattr(fuse_req_t req);
  static void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                         size_t size, int flags);
  static void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  static void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  static void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

  const PassthroughOptions options_;
  Inode root_;
  std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;  // guarded by mu_
};

}  // namespace dfuse

#endif  // DFUSE_WORKLOADS_PASSTHROUGH_PASSTHROUGH_FS_H_
