// GFID <-> backing file. A GFID is MakeGfid(shard, st_ino); the table maps
// the shard-local part to the file handle name_to_handle_at() gave for it,
// persisted in a HandleLog, and caches open descriptors of recently used
// files with an LRU bound.
//
// Confinement: the only way into the table is Lookup() by a validated name
// from a directory already in it, starting at the export root, so every GFID
// that resolves names a file reached from inside the export.
#ifndef DFUSE_STORAGE_HANDLE_TABLE_H_
#define DFUSE_STORAGE_HANDLE_TABLE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "storage/fd.h"
#include "storage/handle_log.h"

namespace dfuse::storage {

// A file the table can reach. Shared by the cache and by the requests using
// it, so eviction never closes a descriptor in use.
class Node {
 public:
  Node(uint64_t gfid, uint64_t generation, mode_t type, std::string handle, int mount_fd, Fd path)
      : gfid_(gfid),
        generation_(generation),
        type_(type),
        handle_(std::move(handle)),
        mount_fd_(mount_fd),
        path_(std::move(path)) {}

  uint64_t gfid() const { return gfid_; }
  uint64_t generation() const { return generation_; }
  mode_t type() const { return type_; }  // the S_IFMT bits; an inode never changes type
  const std::string& handle() const { return handle_; }
  // An O_PATH descriptor: for *at() calls, fstat and /proc/self/fd paths.
  int path_fd() const { return path_.get(); }
  // The /proc/self/fd path of path_fd(), for calls that have no *at() form.
  // It names this very inode and is never resolved further.
  std::string proc_path() const;
  // The inode's current attributes: 0 or an errno.
  int Stat(struct stat* st) const;

  // A descriptor for reading (write = false) or writing a regular file,
  // opened on first use and kept while the node is cached. Returns 0 or an
  // errno (e.g. EROFS when asked to write a read-only file).
  int DataFd(bool write, int* fd);

 private:
  const uint64_t gfid_;
  const uint64_t generation_;
  const mode_t type_;
  const std::string handle_;
  const int mount_fd_;  // owned by the HandleTable, which outlives requests
  const Fd path_;

  std::mutex mu_;
  Fd data_;
  bool data_writable_ = false;
};

class HandleTable {
 public:
  // Opens the export root and the handle log in `state_dir`. `max_nodes`
  // bounds the number of cached nodes (each holds up to two descriptors).
  static std::unique_ptr<HandleTable> Open(const std::string& export_dir,
                                           const std::string& state_dir, uint32_t shard_id,
                                           size_t max_nodes, std::string* error);

  uint32_t shard_id() const { return shard_id_; }
  const std::shared_ptr<Node>& root() const { return root_; }

  // The node of a GFID: 0, or ESTALE if this shard never handed out the
  // GFID or its file no longer exists (or another errno, e.g. EMFILE).
  int Resolve(uint64_t gfid, std::shared_ptr<Node>* node);

  // Looks the single component `name` up in directory `parent`, never
  // following a symlink, and registers the file found. Returns 0 or an
  // errno: ENOENT, ENOTDIR if `parent` is not a directory, EXDEV if the
  // name is a mount point of another file system (not exported).
  int Lookup(const Node& parent, const char* name, std::shared_ptr<Node>* node, struct stat* st);

  // Creates the regular file `name` in `parent` with O_EXCL (EEXIST if
  // anything, even a dangling symlink, has the name) and registers the file
  // it created. The new file is held by descriptor from its creation on, so
  // another client's unlink or rename of the name in between cannot make
  // this return ENOENT or somebody else's file.
  int CreateFile(const Node& parent, const char* name, mode_t perm, std::shared_ptr<Node>* node,
                 struct stat* st);

  // Makes the handles of every file looked up so far durable.
  int Sync() { return log_->Sync(); }

 private:
  HandleTable(uint32_t shard_id, size_t max_nodes, dev_t dev, Fd mount)
      : shard_id_(shard_id), max_nodes_(max_nodes), dev_(dev), mount_(std::move(mount)) {}

  // Enters a freshly opened file in the table and the log.
  int Register(Fd path, const struct stat& st, std::shared_ptr<Node>* node);
  // Puts `node` at the front of the LRU, replacing any node of the same id.
  // Requires mu_.
  void CacheLocked(const std::shared_ptr<Node>& node);

  const uint32_t shard_id_;
  const size_t max_nodes_;
  const dev_t dev_;
  const Fd mount_;  // the export root, O_RDONLY: the mount_fd of open_by_handle_at
  std::shared_ptr<Node> root_;
  std::unique_ptr<HandleLog> log_;

  std::mutex mu_;
  HandleRecords records_;                 // every file ever handed out, by local id
  std::list<std::shared_ptr<Node>> lru_;  // most recently used first
  std::unordered_map<uint64_t, std::list<std::shared_ptr<Node>>::iterator> cached_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_HANDLE_TABLE_H_
