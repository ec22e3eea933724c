// Keeps the kernel's directory cache free of stale aliases.
#ifndef DFUSE_IMPL_COMMON_DIR_ALIASES_H_
#define DFUSE_IMPL_COMMON_DIR_ALIASES_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "util/stats.h"

namespace dfuse {

// A directory has exactly one dentry in the kernel. When another node moves
// a directory, this node's kernel still has it under the old name, and the
// first lookup of the new name fails with ESTALE whenever the kernel cannot
// move the old dentry there (e.g. inside a rename(2), which holds the locks
// that move needs). So the daemon remembers where it last told the kernel
// each directory is; when a directory shows up elsewhere, the old entry is
// invalidated from a separate thread (never inside a request: the kernel
// holds directory locks there that the invalidation needs). A reply that
// hands the kernel such a directory first waits, briefly, for that
// invalidation: when the waiting syscall itself holds a lock the
// invalidation needs, the wait times out, the kernel fails the lookup with
// ESTALE and retries it once after dropping its locks. The retry walks the
// path again, revalidating its directories with lookups that hold no lock:
// those wait for the queued invalidations (WaitQueuedSettled), so the
// invalidation gets its lock there instead of having to win a race for it
// in the instant between the two attempts (which, on a loaded machine, it
// can lose: the retry then fails with ESTALE too).
class DirAliases {
 public:
  explicit DirAliases(StatsRegistry* stats);
  ~DirAliases();
  DirAliases(const DirAliases&) = delete;
  DirAliases& operator=(const DirAliases&) = delete;

  // Drops the kernel's entry `name` in directory `parent`: 0 or -errno
  // (fuse_lowlevel_notify_inval_entry).
  using EntryInvalidator = std::function<int(fuse_ino_t parent, const std::string& name)>;

  // Starts invalidating through `se` (or `invalidate`); before this, moves
  // are only recorded.
  void Start(fuse_session* se);
  void Start(EntryInvalidator invalidate);
  // The kernel was told directory `ino` is `name` in `parent`.
  void Seen(fuse_ino_t ino, fuse_ino_t parent, const std::string& name);
  // Waits up to `timeout` until no invalidation for directory `ino` is
  // pending. Call before replying with the directory.
  void WaitSettled(fuse_ino_t ino, std::chrono::milliseconds timeout);
  // Whether an invalidation for directory `ino` is queued or running.
  bool Pending(fuse_ino_t ino);
  // Waits up to `timeout` until every invalidation queued before the call
  // is done. Call in a lookup before replying.
  void WaitQueuedSettled(std::chrono::milliseconds timeout);
  // This node renamed `name` in `parent` to `new_name` in `new_parent`
  // (exchanging the two when `exchange`): its kernel moves its entries
  // itself, so the directories it knew there are now where it moved them.
  // Without this, a directory this node moved and another node moved on
  // would have the wrong entry invalidated, and the kernel would keep
  // failing the lookup with ESTALE.
  void Renamed(fuse_ino_t parent, const std::string& name, fuse_ino_t new_parent,
               const std::string& new_name, bool exchange);
  // The kernel no longer knows directory `ino`.
  void Forget(fuse_ino_t ino);

 private:
  struct Stale {
    fuse_ino_t ino;
    fuse_ino_t parent;
    std::string name;
  };
  void Run();
  // Records directory `ino` at `entry` (and nothing else there); requires mu_.
  void Place(fuse_ino_t ino, std::pair<fuse_ino_t, std::string> entry);

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<fuse_ino_t, std::pair<fuse_ino_t, std::string>> where_;
  std::map<std::pair<fuse_ino_t, std::string>, fuse_ino_t> at_;  // where_, the other way
  std::unordered_map<fuse_ino_t, int> pending_;  // invalidations queued or running
  std::condition_variable settled_cv_;
  std::deque<Stale> stale_;
  // Invalidations queued and done so far; one thread runs them in order.
  uint64_t queued_ = 0;
  uint64_t done_ = 0;
  bool stopping_ = false;
  EntryInvalidator invalidate_;
  std::thread thread_;
  Counter* invalidations_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_DIR_ALIASES_H_
