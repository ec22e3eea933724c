// weakwriteback's consistency policy: close-to-open with the kernel's page
// cache in write-back mode. An open(2) that starts after another node's
// close(2) returned sees that node's data and size; between opens nothing
// is coordinated, so writes stay at page-cache speed.
//
// The write-back cache makes this harder than close_to_open.h: for a
// cached inode the kernel trusts its own size and mtime over what storage
// reports (fs/fuse fuse_change_attributes, cache_mask), so new attributes
// alone never make it drop stale pages or learn a new size. When another
// node changed a file that no process on this node has open, the next open
// of it here therefore makes the kernel let go of its inode:
//
//   * the name the kernel last got the file under is invalidated
//     (notify_inval_entry, from the policy's own thread: the kernel may
//     hold the directory lock the invalidation needs in another request);
//   * the open fails with ESTALE, so the VFS drops its references and
//     retries once with LOOKUP_REVAL; with no dentry and no open file left
//     the old inode is evicted (FUSE keeps no unused inodes), and the retry
//     builds a new one from storage's attributes, with no cached pages;
//   * the retried OPEN succeeds, without FOPEN_KEEP_CACHE in case the old
//     inode survived (another name, a process racing the open).
//
// The old inode is never made bad, so no descriptor on it fails. While the
// file is open here, or when its inode survives, an open gets what the
// stock protocol allows: the pages dropped (no FOPEN_KEEP_CACHE) and the
// size raised to storage's (a notify_store of the last byte); a size that
// another node shrank shows once a read reaches the new end.
#ifndef DFUSE_IMPL_WEAKWRITEBACK_WRITEBACK_CLOSE_TO_OPEN_H_
#define DFUSE_IMPL_WEAKWRITEBACK_WRITEBACK_CLOSE_TO_OPEN_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "impl/common/close_to_open.h"

namespace dfuse {

class WriteBackCloseToOpen : public CloseToOpen {
 public:
  // Drops the kernel's entry `name` in `parent`: 0 or -errno
  // (fuse_lowlevel_notify_inval_entry); tests pass their own.
  using EntryInvalidator = std::function<int(fuse_ino_t parent, const std::string& name)>;

  explicit WriteBackCloseToOpen(const PolicyContext& ctx);
  ~WriteBackCloseToOpen() override;

  void Attach(fuse_session* se) override;
  void Attach(EntryInvalidator invalidate);
  void Stop() override;
  void EntryGiven(const proto::Attr& attr, fuse_ino_t parent, const std::string& name) override;
  int Open(uint64_t gfid, pid_t caller, fuse_file_info* fi) override;
  void Opened(uint64_t gfid, int flags) override;
  void Closed(uint64_t gfid, int flags) override;
  void Observed(const proto::Attr& attr, bool own, bool changed_elsewhere) override;
  void Forgotten(uint64_t gfid) override;

  // Files with state kept (for tests).
  size_t tracked_files() const;

  // How long an open waits for its entry invalidation before it answers
  // ESTALE anyway (the retry then finds the old inode and refreshes it).
  static constexpr std::chrono::milliseconds kEvictWait{500};
  // The VFS retries an open only once, from the same thread, so that
  // thread's next open must not get ESTALE again (the file may change
  // again, or the name may now be another file, between the retry's lookup
  // and its open): it refreshes the inode in place instead. An ESTALE whose
  // retry never came (the thread was killed) is forgotten after this long.
  static constexpr std::chrono::seconds kRetryWindow{5};

 private:
  struct File {
    fuse_ino_t parent = 0;  // where the kernel last got it; 0: unknown
    std::string name;
    uint32_t opens = 0;      // handles open on this node
    bool stale = false;      // another node changed it since the kernel's view
    bool evicting = false;   // an open of it was answered ESTALE; the kernel has not let go
  };
  using Clock = std::chrono::steady_clock;
  struct Eviction {
    fuse_ino_t parent;
    std::string name;
    std::promise<void> done;
  };

  // Whether `caller`'s open is the retry of one answered ESTALE; forgets
  // that ESTALE. Requires mu_.
  bool TakeRetryLocked(pid_t caller, Clock::time_point now);
  // Makes the kernel's size of gfid at least `size` (> 0).
  void RaiseKernelSize(uint64_t gfid, uint64_t size);
  void EvictorLoop();

  std::atomic<fuse_session*> se_{nullptr};
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::unordered_map<uint64_t, File> files_;  // regular files the kernel has
  // Threads whose open was answered ESTALE, until when their retry is
  // expected (kRetryWindow).
  std::unordered_map<pid_t, Clock::time_point> retries_;
  std::deque<std::unique_ptr<Eviction>> evictions_;
  EntryInvalidator invalidate_;
  bool stopping_ = false;
  std::thread evictor_;
  Counter* const replaced_;   // opens answered ESTALE to get a new inode
  Counter* const refreshed_;  // opens that refreshed an inode in place
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_WEAKWRITEBACK_WRITEBACK_CLOSE_TO_OPEN_H_
