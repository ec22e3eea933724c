// Gates FUSE I/O on userspace leases: the writethrough mode's side of the
// lease protocol (ARCHITECTURE.md sections 5 and 7).
//
// Every READ and WRITE request, and every GETATTR of a regular file, runs
// while this node holds a lease strong enough for it: the request holds the
// file's I/O lock shared, and the revoke handler takes it exclusively, so a
// revoke waits for the requests in flight and new ones wait for the next
// grant.
//
// Revoking makes the data durable (buffer cache flushed and fsynced when it
// was dirty), drops the buffer cache's copy and lowers the held mode; the
// kernel's pages are invalidated afterwards, from the gate's own thread.
// It cannot be done before the ack: the kernel keeps a page locked while it
// waits for a READ or WRITE request, and such a request may itself be
// waiting for this lease, which would wait for the ack. Reads stay correct
// without it because, with auto_inval_data, the kernel sends a GETATTR
// before serving a read(2) from its cache whenever its attributes are not
// valid, and GETATTR first waits until the file's pending kernel
// invalidation is done. The kernel keeps the attributes a GETATTR under the
// lease hands it for as long as the lease is trusted (so a read(2) under a
// held lease costs no round trip), so before the ack the revoke drops
// them, which needs no page lock.
// The invalidation itself waits only for requests that wait for the
// manager, never for this node, so it always finishes.
//
// A grant is this node's until the gate's Revoke of it has run, even when
// the revoke arrives before the request that asked for the grant has used
// it: that request goes ahead and the revoke waits for it. With lingering
// (--linger), the manager revokes as soon as another node waits, and
// Revoke first keeps the lease until no request here still waits for a
// grant of the file (or the time the manager gave is up).
//
// An upgrade from READ to WRITE gives the READ lease up before the WRITE
// lease is granted, and another node may write in between. Rather than drop
// the caches first (the paper's Algorithm 1), the gate only stops serving
// from them (KeepForUpgrade drops the held mode and the kernel's
// attributes, so the next read(2) asks and waits), and the manager's grant
// says whether a WRITE lease went elsewhere meanwhile: only then does the
// agent run Revoke, before the grant applies. A first write to a file read
// before keeps its pages.
//
// Writes need one more step. A write(2) copies its data into the kernel's
// page cache before its WRITE request reaches the daemon, so the lease must
// be held from before that copy: otherwise local readers could see data
// this node has no right to have written yet, and a pending invalidation
// could drop the copied page and let a read refill it with older data. The
// kernel asks for security.capability at the start of every write(2) (FUSE
// clears SB_NOSEC), with no page locked: for a file open for writing here,
// that request is taken as a write intent (BeginWrite), which waits for
// pending invalidations, acquires the WRITE lease and pins it until the
// WRITE request is done (EndWrite). A revoke waits for pinned intents, up
// to kIntentTimeout for one whose WRITE never comes (a failed copy).
//
// Between its page copy and its WRITE request a write(2) is exposed once
// more: a READ served then comes from the buffer cache, which does not have
// the write's bytes yet, and if it fills the page the copy went to, the
// older data stays in the kernel's cache after the write(2) returned. The
// checker caught a process reading back the value before its own write,
// under load on 6.18 (whose FUSE reads through iomap, with large folios):
// the daemon saw a READ of the written page between the intent and the
// WRITE, with no attribute change that would have dropped the page; the
// exact kernel path is not pinned down. So every intent collects the bytes
// of the READs served while it is in flight (ReadStarting), and its WRITE,
// once the bytes are in the buffer cache, queues a kernel invalidation of
// the pages it wrote that those READs covered, and drops the kernel's
// attributes, so the next read(2)'s GETATTR waits for it as it does after
// a revoke. A READ fills only the pages it asked for, so the rest of the
// kernel's cache stays. Intents are kept by thread: the kernel sends a
// write(2)'s security.capability lookup and its WRITE from the writing
// thread, so each WRITE ends its own intent and no other.
#ifndef DFUSE_IMPL_WRITETHROUGH_LEASE_GATE_H_
#define DFUSE_IMPL_WRITETHROUGH_LEASE_GATE_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "impl/common/buffer_cache.h"
#include "lease/agent.h"
#include "util/stats.h"

namespace dfuse {

using lease::LeaseMode;

class LeaseGate {
 public:
  // Drops the kernel's cached attributes of a file and, unless `offset` is
  // negative, its cached pages from `offset` on, `length` bytes of them (0:
  // to the end), as fuse_lowlevel_notify_inval_inode.
  using KernelInvalidator = std::function<void(uint64_t gfid, int64_t offset, int64_t length)>;

  LeaseGate(BufferCache* cache, KernelInvalidator invalidate, StatsRegistry* stats);
  ~LeaseGate();
  LeaseGate(const LeaseGate&) = delete;
  LeaseGate& operator=(const LeaseGate&) = delete;

  // The agent is created after the gate (its revoke handler is Revoke).
  void SetAgent(lease::LeaseAgent* agent) { agent_ = agent; }

  struct File;

  // Keeps a file's lease from being revoked while it lives.
  class Access {
   public:
    Access() = default;
    // The file's lease epoch: it changes whenever the node gives the lease
    // or part of it up (a revoke, an upgrade's release of READ), so two
    // Accesses with the same epoch saw the lease held without a break in
    // between.
    uint64_t epoch() const;

   private:
    friend class LeaseGate;
    std::shared_ptr<File> file_;
    std::shared_lock<std::shared_mutex> lock_;
  };

  // Blocks until this node holds at least `mode` on gfid; *access keeps it
  // held until destroyed. Returns 0 or the agent's errno.
  int Enter(uint64_t gfid, LeaseMode mode, Access* access);
  // Enter without waiting or asking the manager: false unless `mode` is
  // held (and trusted) right now.
  bool TryEnter(uint64_t gfid, LeaseMode mode, Access* access);
  // Enter(kRead) for a GETATTR, which the kernel sends before serving a
  // read(2) from its cache: returns holding the lease once local writes are
  // done and the kernel's cache holds nothing from before the last revoke.
  int EnterForAttributes(uint64_t gfid, Access* access);
  // The fencing token of this node's WRITE lease on gfid, 0 if none.
  uint64_t WriteToken(uint64_t gfid);
  // The agent's revoke handler. With `linger` above zero (the node
  // lingers: LeaseAgentOptions::lingers), the lease is first kept for up to
  // that long, until no request of this node still waits for a grant of
  // the file: a grant is never taken back before the request that asked
  // for it has used it once. Then the requests in flight finish and the
  // revoke goes ahead.
  void Revoke(uint64_t gfid, LeaseMode to,
              std::chrono::milliseconds linger = std::chrono::milliseconds(0));
  // The agent's before_upgrade: the READ lease is given up for a WRITE
  // request. Requests wait for the grant, and the kernel asks for
  // attributes (and so waits) before its next read(2) from its cache, but
  // the pages and the buffer cache stay: the agent runs Revoke if another
  // node wrote before the grant.
  void KeepForUpgrade(uint64_t gfid);
  // Clean unmount: gives every lease back (the data is already written back).
  void ReleaseAll();
  // The kernel forgot gfid's inode: in the background, write back, give the
  // lease back and drop the file's state, unless it is used again first.
  void Forget(uint64_t gfid);
  // Stops the invalidation thread (which calls the KernelInvalidator): call
  // after the agent's revoke threads have stopped and before the FUSE
  // session goes away. Idempotent; the destructor calls it.
  void Stop();

  // Open files with write access on this node (intents only count there).
  void OpenedForWrite(uint64_t gfid);
  void ClosedForWrite(uint64_t gfid);
  // A write(2) to gfid by thread `task` is starting (see above). Returns 0
  // or an errno. No-op for a file not open for writing here.
  int BeginWrite(uint64_t gfid, pid_t task);
  // A WRITE request for gfid from `task` is done, and put `length` bytes
  // at `offset` in the buffer cache. truncate(2) and fallocate(2) announce
  // themselves the same way (file_remove_privs), so a size-changing SETATTR
  // and a FALLOCATE end an intent too, with length 0: the READs their
  // intent saw may have filled any page with what they changed.
  void EndWrite(uint64_t gfid, pid_t task, uint64_t offset, uint64_t length);
  // A READ of `length` bytes at `offset` is about to be served from the
  // buffer cache under `access` (see above).
  void ReadStarting(const Access& access, uint64_t offset, uint64_t length);
  // Waits (up to kIntentTimeout) until no write(2) to gfid is in flight on
  // this node. Attributes sent to the kernel can make it drop the file's
  // pages (auto_inval_data on an mtime change), so replies that carry a
  // regular file's attributes wait for local writes first.
  void WaitWritesDone(uint64_t gfid);

  // Only a write(2) that fails after its intent (a fault copying the user's
  // buffer) never sends its WRITE; everything else may be slow under load.
  static constexpr std::chrono::milliseconds kIntentTimeout{2000};
  // The longest a revoke lingers (as dfuse.ko's DFUSE_LINGER_MAX_MS): a
  // request waiting for a later grant of the file keeps it that long.
  static constexpr std::chrono::milliseconds kMaxLinger{1000};

 private:
  // Work for the gate's own thread.
  struct Job {
    enum Kind { kInvalidate, kForget } kind;
    uint64_t gfid;
    uint64_t offset = 0;  // kInvalidate: the pages to drop
    uint64_t length = 0;  // 0: to the end
  };

  std::shared_ptr<File> Get(uint64_t gfid);
  // Whether f's lease covers `mode` right now (f.io_mu held).
  bool HeldNow(const File& f, LeaseMode mode) const;
  // A request of this node asks the manager for f's lease / has it now, or
  // gave up (counted in File::asking).
  void StartAsking(File* f);
  void DoneAsking(File* f);
  // Needs no page lock, so any thread may call it.
  void DropKernelAttributes(uint64_t gfid) { invalidate_(gfid, -1, 0); }
  // Queues a kernel invalidation of gfid's pages in [offset, offset +
  // length) (length 0: to the end) for the gate's thread; the file counts
  // it as pending until it is done. Requires mu_.
  void QueueInvalidationLocked(uint64_t gfid, File* f, uint64_t offset = 0, uint64_t length = 0);
  // Waits until the kernel's cache of gfid holds nothing from before the
  // last revoke. Call without holding an Access.
  void WaitKernelClean(uint64_t gfid);
  void InvalidatorLoop();
  void Reap(uint64_t gfid, const std::shared_ptr<File>& f);

  BufferCache* const cache_;
  const KernelInvalidator invalidate_;
  lease::LeaseAgent* agent_ = nullptr;

  std::atomic<uint64_t> last_epoch_{0};
  std::mutex mu_;  // guards files_, queue_, stopping_ and every File::pending
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::shared_ptr<File>> files_;
  std::deque<Job> queue_;  // kernel invalidations and forgotten files, in order
  bool stopping_ = false;
  std::thread invalidator_;

  Counter* revokes_;
  Counter* upgrades_;
  Counter* durable_flushes_;
  Counter* slow_enters_;
  Counter* intents_;
  Counter* stale_intents_;
  Counter* stale_fill_invalidations_;  // invalidations after READs raced a write,
  Counter* stale_fill_pages_;          // the pages they dropped,
  Counter* stale_fill_whole_files_;    // and those of every page (truncate, fallocate)
  Latency* kernel_inval_latency_;
  Counter* files_created_;  // entries made in files_ ...
  Counter* files_reaped_;   // ... and dropped again after a forget
  Counter* linger_timeouts_;  // revokes that lingered until their time was up
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_WRITETHROUGH_LEASE_GATE_H_
