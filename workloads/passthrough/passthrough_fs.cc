#include "workloads/passthrough/passthrough_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <vector>

namespace dfuse {
namespace {

// The path that reopens an O_PATH descriptor with real access.
std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The open(2) flags a file is opened with. With the write-back cache the
// kernel reads pages it writes only part of, so write-only opens read too,
// and it keeps the file's size itself, so O_APPEND would put its page writes
// at the wrong place.
int OpenFlags(int flags, bool writeback) {
  if (writeback) {
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags & ~O_NOFOLLOW;
}

// An open directory: the stream and where the kernel last left it.
struct DirHandle {
  DIR* dp = nullptr;
  off_t offset = 0;
  dirent* pending = nullptr;  // read but not yet handed to the kernel
};

// Answers a size query (size 0) with the size, otherwise with the value.
void ReplyXattr(fuse_req_t req, size_t size, const std::function<ssize_t(char*, size_t)>& get) {
  if (size == 0) {
    const ssize_t n = get(nullptr, 0);
    if (n < 0) {
      fuse_reply_err(req, errno);
    } else {
      fuse_reply_xattr(req, static_cast<size_t>(n));
    }
    return;
  }
  std::vector<char> buf(size);
  const ssize_t n = get(buf.data(), size);
  if (n < 0) {
    fuse_reply_err(req, errno);
  } else {
    fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
  }
}

}  // namespace

std::unique_ptr<PassthroughFs> PassthroughFs::Open(const PassthroughOptions& options,
                                                   std::string* error) {
  const int fd = ::open(options.source.c_str(), O_PATH | O_DIRECTORY);
  if (fd < 0) {
    *error = "cannot open " + options.source + ": " + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    *error = "cannot stat " + options.source + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<PassthroughFs>(new PassthroughFs(options, fd, st));
}

PassthroughFs::PassthroughFs(const PassthroughOptions& options, int root_fd,
                             const struct stat& root)
    : options_(options) {
  root_.fd = root_fd;
  root_.dev = root.st_dev;
  root_.ino = root.st_ino;
  root_.lookups = 1;  // never forgotten
}

PassthroughFs::~PassthroughFs() {
  for (auto& [key, inode] : inodes_) ::close(inode->fd);
  ::close(root_.fd);
}

PassthroughFs* PassthroughFs::Of(fuse_req_t req) {
  return static_cast<PassthroughFs*>(fuse_req_userdata(req));
}

PassthroughFs::Inode* PassthroughFs::Get(fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return &root_;
  return reinterpret_cast<Inode*>(ino);
}

int PassthroughFs::Lookup(fuse_ino_t parent, const char* name, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = options_.timeout_s;
  e->entry_timeout = options_.timeout_s;
  const int fd = ::openat(Get(parent)->fd, name, O_PATH | O_NOFOLLOW);
  if (fd < 0) return errno;
  if (::fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    ::close(fd);
    return err;
  }
  if (e->attr.st_dev == root_.dev && e->attr.st_ino == root_.ino) {  // ".." of a child
    ::close(fd);
    e->ino = FUSE_ROOT_ID;
    return 0;
  }
  std::lock_guard<std::mutex> l(mu_);
  auto& slot = inodes_[{e->attr.st_dev, e->attr.st_ino}];
  if (slot == nullptr) {
    slot = std::make_unique<Inode>();
    slot->fd = fd;
    slot->dev = e->attr.st_dev;
    slot->ino = e->attr.st_ino;
  } else {
    ::close(fd);  // known already: keep the first descriptor
  }
  ++slot->lookups;
  e->ino = reinterpret_cast<fuse_ino_t>(slot.get());
  return 0;
}

void PassthroughFs::Forget(fuse_ino_t ino, uint64_t n) {
  if (ino == FUSE_ROOT_ID) return;
  Inode* inode = Get(ino);
  std::lock_guard<std::mutex> l(mu_);
  inode->lookups -= std::min(n, inode->lookups);
  if (inode->lookups == 0) {
    ::close(inode->fd);
    inodes_.erase({inode->dev, inode->ino});
  }
}

void PassthroughFs::Init(void* userdata, fuse_conn_info* conn) {
  auto* fs = static_cast<PassthroughFs*>(userdata);
  if (fs->options_.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
}

void PassthroughFs::OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  const int err = Of(req)->Lookup(parent, name, &e);
  if (err == ENOENT) {  // a negative entry, cached as long as a positive one
    std::memset(&e, 0, sizeof(e));
    e.entry_timeout = Of(req)->options_.timeout_s;
    fuse_reply_entry(req, &e);
  } else if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void PassthroughFs::OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Of(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void PassthroughFs::OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Of(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void PassthroughFs::OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  struct stat st;
  if (::fstatat(Of(req)->Get(ino)->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_attr(req, &st, Of(req)->options_.timeout_s);
}

void PassthroughFs::OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid,
                              fuse_file_info* fi) {
  Inode* inode = Of(req)->Get(ino);
  const std::string path = ProcPath(inode->fd);
  int r = 0;
  if (r == 0 && (valid & FUSE_SET_ATTR_MODE)) {
    r = fi != nullptr ? ::fchmod(fi->fh, attr->st_mode) : ::chmod(path.c_str(), attr->st_mode);
  }
  if (r == 0 && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    const uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    const gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    r = ::fchownat(inode->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }
  if (r == 0 && (valid & FUSE_SET_ATTR_SIZE)) {
    r = fi != nullptr ? ::ftruncate(fi->fh, attr->st_size)
                      : ::truncate(path.c_str(), attr->st_size);
  }
  if (r == 0 && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (valid & FUSE_SET_ATTR_ATIME_NOW) {
      times[0].tv_nsec = UTIME_NOW;
    } else if (valid & FUSE_SET_ATTR_ATIME) {
      times[0] = attr->st_atim;
    }
    if (valid & FUSE_SET_ATTR_MTIME_NOW) {
      times[1].tv_nsec = UTIME_NOW;
    } else if (valid & FUSE_SET_ATTR_MTIME) {
      times[1] = attr->st_mtim;
    }
    r = fi != nullptr ? ::futimens(fi->fh, times) : ::utimensat(AT_FDCWD, path.c_str(), times, 0);
  }
  if (r != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  OpGetattr(req, ino, fi);
}

void PassthroughFs::OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (::mkdirat(Of(req)->Get(parent)->fd, name, mode) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param e;
  const int err = Of(req)->Lookup(parent, name, &e);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void PassthroughFs::OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ::unlinkat(Of(req)->Get(parent)->fd, name, 0) == 0 ? 0 : errno);
}

void PassthroughFs::OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ::unlinkat(Of(req)->Get(parent)->fd, name, AT_REMOVEDIR) == 0 ? 0 : errno);
}

void PassthroughFs::OpRename(fuse_req_t req, fuse_ino_t parent, const char* name,
                             fuse_ino_t newparent, const char* newname, unsigned int flags) {
  PassthroughFs* fs = Of(req);
  const int r = ::renameat2(fs->Get(parent)->fd, name, fs->Get(newparent)->fd, newname, flags);
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

void PassthroughFs::OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  PassthroughFs* fs = Of(req);
  const int fd =
      ::open(ProcPath(fs->Get(ino)->fd).c_str(), OpenFlags(fi->flags, fs->options_.writeback));
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fi->fh = fd;
  fi->keep_cache = fs->options_.timeout_s > 0;  // nothing changes the source behind us
  fuse_reply_open(req, fi);
}

void PassthroughFs::OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                             fuse_file_info* fi) {
  PassthroughFs* fs = Of(req);
  const int fd = ::openat(fs->Get(parent)->fd, name,
                          OpenFlags(fi->flags, fs->options_.writeback) | O_CREAT, mode);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param e;
  const int err = fs->Lookup(parent, name, &e);
  if (err != 0) {
    ::close(fd);
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = fd;
  fi->keep_cache = fs->options_.timeout_s > 0;
  fuse_reply_create(req, &e, fi);
}

void PassthroughFs::OpRead(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off,
                           fuse_file_info* fi) {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = static_cast<int>(fi->fh);
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_NO_SPLICE);
}

void PassthroughFs::OpWriteBuf(fuse_req_t req, fuse_ino_t /*ino*/, fuse_bufvec* in, off_t off,
                               fuse_file_info* fi) {
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = static_cast<int>(fi->fh);
  out.buf[0].pos = off;
  const ssize_t n = fuse_buf_copy(&out, in, FUSE_BUF_NO_SPLICE);
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void PassthroughFs::OpFlush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  // Closing a duplicate reports the errors close(2) would, without closing
  // the descriptor other users of the open file still read and write.
  const int dup = ::dup(static_cast<int>(fi->fh));
  fuse_reply_err(req, dup >= 0 && ::close(dup) == 0 ? 0 : errno);
}

void PassthroughFs::OpRelease(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  ::close(static_cast<int>(fi->fh));
  fuse_reply_err(req, 0);
}

void PassthroughFs::OpFsync(fuse_req_t req, fuse_ino_t /*ino*/, int datasync, fuse_file_info* fi) {
  const int fd = static_cast<int>(fi->fh);
  fuse_reply_err(req, (datasync ? ::fdatasync(fd) : ::fsync(fd)) == 0 ? 0 : errno);
}

void PassthroughFs::OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const int fd = ::openat(Of(req)->Get(ino)->fd, ".", O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  auto d = std::make_unique<DirHandle>();
  d->dp = ::fdopendir(fd);
  if (d->dp == nullptr) {
    const int err = errno;
    ::close(fd);
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(d.release());
  fuse_reply_open(req, fi);
}

void PassthroughFs::OpReaddir(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off,
                              fuse_file_info* fi) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  if (off != d->offset) {  // the kernel starts over or skips back
    ::seekdir(d->dp, off);
    d->pending = nullptr;
    d->offset = off;
  }
  std::vector<char> buf(size);
  size_t used = 0;
  for (;;) {
    if (d->pending == nullptr) {
      errno = 0;
      d->pending = ::readdir(d->dp);
      if (d->pending == nullptr) {
        if (errno != 0 && used == 0) {
          fuse_reply_err(req, errno);
          return;
        }
        break;
      }
    }
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_ino = d->pending->d_ino;
    st.st_mode = static_cast<mode_t>(d->pending->d_type) << 12;
    const size_t need = fuse_add_direntry(req, buf.data() + used, size - used, d->pending->d_name,
                                          &st, d->pending->d_off);
    if (need > size - used) break;  // the next call starts with it
    used += need;
    d->offset = d->pending->d_off;
    d->pending = nullptr;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void PassthroughFs::OpReleasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  ::closedir(d->dp);
  delete d;
  fuse_reply_err(req, 0);
}

void PassthroughFs::OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs st;
  if (::fstatvfs(Of(req)->Get(ino)->fd, &st) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_statfs(req, &st);
}

bool PassthroughFs::ServesXattr(fuse_req_t req) {
  if (Of(req)->options_.xattr) return true;
  fuse_reply_err(req, ENOSYS);  // the kernel stops asking
  return false;
}

// Extended attributes go through the /proc path: the *xattr(2) calls on a
// descriptor refuse O_PATH ones.
void PassthroughFs::OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                               size_t size, int flags) {
  if (!ServesXattr(req)) return;
  const std::string path = ProcPath(Of(req)->Get(ino)->fd);
  fuse_reply_err(req, ::setxattr(path.c_str(), name, value, size, flags) == 0 ? 0 : errno);
}

void PassthroughFs::OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (!ServesXattr(req)) return;
  const std::string path = ProcPath(Of(req)->Get(ino)->fd);
  ReplyXattr(req, size,
             [&](char* buf, size_t n) { return ::getxattr(path.c_str(), name, buf, n); });
}

void PassthroughFs::OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  if (!ServesXattr(req)) return;
  const std::string path = ProcPath(Of(req)->Get(ino)->fd);
  ReplyXattr(req, size, [&](char* buf, size_t n) { return ::listxattr(path.c_str(), buf, n); });
}

void PassthroughFs::OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (!ServesXattr(req)) return;
  const std::string path = ProcPath(Of(req)->Get(ino)->fd);
  fuse_reply_err(req, ::removexattr(path.c_str(), name) == 0 ? 0 : errno);
}

const fuse_lowlevel_ops& PassthroughFs::Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof(o));
    o.init = Init;
    o.lookup = OpLookup;
    o.forget = OpForget;
    o.forget_multi = OpForgetMulti;
    o.getattr = OpGetattr;
    o.setattr = OpSetattr;
    o.mkdir = OpMkdir;
    o.unlink = OpUnlink;
    o.rmdir = OpRmdir;
    o.rename = OpRename;
    o.open = OpOpen;
    o.create = OpCreate;
    o.read = OpRead;
    o.write_buf = OpWriteBuf;
    o.flush = OpFlush;
    o.release = OpRelease;
    o.fsync = OpFsync;
    o.opendir = OpOpendir;
    o.readdir = OpReaddir;
    o.releasedir = OpReleasedir;
    o.statfs = OpStatfs;
    o.setxattr = OpSetxattr;
    o.getxattr = OpGetxattr;
    o.listxattr = OpListxattr;
    o.removexattr = OpRemovexattr;
    return o;
  }();
  return ops;
}

}  // namespace dfuse
