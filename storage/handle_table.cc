#include "storage/handle_table.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "util/gfid.h"

namespace dfuse::storage {
namespace {

// The file handle of `fd` (an O_PATH descriptor) as bytes, header included.
int HandleOf(int fd, std::string* out) {
  union {
    struct file_handle fh;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } u;
  u.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (::name_to_handle_at(fd, "", &u.fh, &mount_id, AT_EMPTY_PATH) != 0) return errno;
  out->assign(u.buf, sizeof(struct file_handle) + u.fh.handle_bytes);
  return 0;
}

// open_by_handle_at() wants a mutable struct file_handle.
int OpenByHandle(int mount_fd, const std::string& handle, int flags) {
  union {
    struct file_handle fh;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } u;
  if (handle.size() < sizeof(struct file_handle) || handle.size() > sizeof(u.buf)) {
    errno = ESTALE;
    return -1;
  }
  std::memcpy(u.buf, handle.data(), handle.size());
  return ::open_by_handle_at(mount_fd, &u.fh, flags | O_CLOEXEC);
}

// The inode generation, so a client can tell a reused inode number from the
// file it knew. Opening is only safe for directories and regular files (a
// FIFO or device could block or have side effects); the others report 0, as
// do file systems without FS_IOC_GETVERSION.
uint64_t GenerationOf(int mount_fd, const std::string& handle, mode_t type) {
  if (!S_ISREG(type) && !S_ISDIR(type)) return 0;
  Fd fd(OpenByHandle(mount_fd, handle, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  int gen = 0;
  if (!fd.valid() || ::ioctl(fd.get(), FS_IOC_GETVERSION, &gen) != 0) return 0;
  return static_cast<uint32_t>(gen);
}

int Fstat(int fd, struct stat* st) {
  return ::fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

}  // namespace

std::string Node::proc_path() const { return "/proc/self/fd/" + std::to_string(path_.get()); }

int Node::Stat(struct stat* st) const { return Fstat(path_.get(), st); }

int Node::DataFd(bool write, int* fd) {
  std::lock_guard<std::mutex> l(mu_);
  if (data_.valid() && (data_writable_ || !write)) {
    *fd = data_.get();
    return 0;
  }
  int f = OpenByHandle(mount_fd_, handle_, O_RDWR | O_NOFOLLOW);
  bool writable = true;
  if (f < 0 && !write &&
      (errno == EROFS || errno == EACCES || errno == EPERM || errno == ETXTBSY)) {
    f = OpenByHandle(mount_fd_, handle_, O_RDONLY | O_NOFOLLOW);
    writable = false;
  }
  if (f < 0) return errno;
  data_ = Fd(f);
  data_writable_ = writable;
  *fd = f;
  return 0;
}

std::unique_ptr<HandleTable> HandleTable::Open(const std::string& export_dir,
                                               const std::string& state_dir, uint32_t shard_id,
                                               size_t max_nodes, std::string* error) {
  Fd mount(::open(export_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Fd path(::open(export_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!mount.valid() || !path.valid()) {
    *error = "cannot open export " + export_dir + ": " + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  std::string handle;
  int err = Fstat(path.get(), &st);
  if (err == 0) err = HandleOf(path.get(), &handle);
  if (err != 0) {
    *error = "cannot get a file handle for " + export_dir + " (file system must support " +
             "name_to_handle_at): " + std::strerror(err);
    return nullptr;
  }
  std::unique_ptr<HandleTable> t(
      new HandleTable(shard_id, max_nodes > 0 ? max_nodes : 1, st.st_dev, std::move(mount)));
  t->log_ = HandleLog::Open(state_dir, handle, &t->records_, error);
  if (!t->log_) return nullptr;

  HandleRecord root{st.st_ino & kLocalMask, GenerationOf(t->mount_.get(), handle, st.st_mode),
                    handle};
  auto it = t->records_.find(root.local_id);
  if (it == t->records_.end() || it->second.handle != handle) {
    if ((err = t->log_->Append(root)) != 0 || (err = t->log_->Sync()) != 0) {
      *error = "cannot write the handle log in " + state_dir + ": " + std::strerror(err);
      return nullptr;
    }
    t->records_[root.local_id] = root;
  }
  t->root_ = std::make_shared<Node>(MakeGfid(shard_id, root.local_id), root.generation,
                                    st.st_mode & S_IFMT, handle, t->mount_.get(), std::move(path));
  return t;
}

int HandleTable::Resolve(uint64_t gfid, std::shared_ptr<Node>* node) {
  if (ShardOf(gfid) != shard_id_) return ESTALE;
  if (gfid == root_->gfid()) {
    *node = root_;
    return 0;
  }
  const uint64_t local = LocalOf(gfid);
  HandleRecord record;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto c = cached_.find(local); c != cached_.end()) {
      lru_.splice(lru_.begin(), lru_, c->second);
      *node = *c->second;
      return 0;
    }
    auto r = records_.find(local);
    if (r == records_.end()) return ESTALE;
    record = r->second;
  }
  Fd path(OpenByHandle(mount_.get(), record.handle, O_PATH));
  if (!path.valid()) return errno == ENOENT ? ESTALE : errno;
  struct stat st;
  if (int err = Fstat(path.get(), &st); err != 0) return err;
  // A handle names an inode and its generation, so this only fails if the
  // log was tampered with; never hand out a file under another file's GFID.
  if ((st.st_ino & kLocalMask) != local) return ESTALE;

  auto fresh = std::make_shared<Node>(gfid, record.generation, st.st_mode & S_IFMT,
                                      std::move(record.handle), mount_.get(), std::move(path));
  std::lock_guard<std::mutex> l(mu_);
  if (auto c = cached_.find(local); c != cached_.end()) {
    // Another request resolved it meanwhile; share its descriptors.
    lru_.splice(lru_.begin(), lru_, c->second);
    *node = *c->second;
  } else {
    CacheLocked(fresh);
    *node = std::move(fresh);
  }
  return 0;
}

int HandleTable::Lookup(const Node& parent, const char* name, std::shared_ptr<Node>* node,
                        struct stat* st) {
  Fd path(::openat(parent.path_fd(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!path.valid()) return errno;
  if (int err = Fstat(path.get(), st); err != 0) return err;
  if (st->st_dev != dev_) return EXDEV;
  return Register(std::move(path), *st, node);
}

int HandleTable::CreateFile(const Node& parent, const char* name, mode_t perm,
                            std::shared_ptr<Node>* node, struct stat* st) {
  // O_NONBLOCK and O_NOFOLLOW are belt and braces: with O_EXCL the call never
  // opens an existing FIFO, device or symlink.
  Fd opened(::openat(parent.path_fd(), name,
                     O_CREAT | O_EXCL | O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, perm));
  if (!opened.valid()) return errno;
  // The table keeps O_PATH descriptors; reopening through /proc names the
  // inode, not the path.
  const std::string self = "/proc/self/fd/" + std::to_string(opened.get());
  Fd path(::open(self.c_str(), O_PATH | O_CLOEXEC));
  if (!path.valid()) return errno;
  if (int err = Fstat(path.get(), st); err != 0) return err;
  return Register(std::move(path), *st, node);
}

int HandleTable::Register(Fd path, const struct stat& st, std::shared_ptr<Node>* node) {
  std::string handle;
  if (int err = HandleOf(path.get(), &handle); err != 0) return err;
  const uint64_t local = st.st_ino & kLocalMask;
  const uint64_t gfid = MakeGfid(shard_id_, local);
  if (gfid == root_->gfid()) {
    *node = root_;
    return 0;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    auto r = records_.find(local);
    if (r != records_.end() && r->second.handle == handle) {
      if (auto c = cached_.find(local); c != cached_.end() && (*c->second)->handle() == handle) {
        lru_.splice(lru_.begin(), lru_, c->second);
        *node = *c->second;
        return 0;
      }
      *node = std::make_shared<Node>(gfid, r->second.generation, st.st_mode & S_IFMT, handle,
                                     mount_.get(), std::move(path));
      CacheLocked(*node);
      return 0;
    }
  }
  // First sight of this file (or its inode number was reused by a new file,
  // whose handle differs in the generation): record it before handing it out.
  HandleRecord record{local, GenerationOf(mount_.get(), handle, st.st_mode), handle};
  std::lock_guard<std::mutex> l(mu_);
  if (int err = log_->Append(record); err != 0) return err;
  *node = std::make_shared<Node>(gfid, record.generation, st.st_mode & S_IFMT, handle, mount_.get(),
                                 std::move(path));
  records_[local] = std::move(record);
  CacheLocked(*node);
  return 0;
}

void HandleTable::CacheLocked(const std::shared_ptr<Node>& node) {
  const uint64_t local = LocalOf(node->gfid());
  if (auto c = cached_.find(local); c != cached_.end()) {
    lru_.erase(c->second);
    cached_.erase(c);
  }
  lru_.push_front(node);
  cached_[local] = lru_.begin();
  while (lru_.size() > max_nodes_) {
    cached_.erase(LocalOf(lru_.back()->gfid()));
    lru_.pop_back();
  }
}

}  // namespace dfuse::storage
