// The daemon's side of dfuse.ko's kernel-level leases (ARCHITECTURE.md
// sections 5-7; protocol in kernel/dfuse/dfuse_proto.h).
//
// Acquire: the kernel asks (DFUSE_LEASE) before it serves or changes cached
// state; the request is taken out of the FUSE request loop and answered
// from a lease worker once the lease manager has granted the mode, so a
// slow grant never holds a loop thread that the kernel's write-back needs.
//
// Revoke: an agent revoke thread sends DFUSE_NOTIFY_RELEASE, which
// returns once the kernel has drained its I/O, written its dirty pages and
// times back through this daemon and dropped what the new mode no longer
// covers; then the buffer cache is flushed and fsynced to storage (a
// revoke ack promises durability), dropped when the lease is gone, and the
// agent acks. The kernel drops a grant that raced the notify and asks
// again; the agent never answers an acquire with a lease whose revoke is
// still being handled.
//
// Kept pages: a revoke to NONE keeps the kernel's clean pages (out of use,
// DFUSE_RELEASE_KEEP_PAGES), and the next grant's hand-offs of the WRITE
// leases between say which bytes other nodes wrote: those are dropped
// (FUSE_NOTIFY_INVAL_INODE) before the kernel's upcall is answered, and the
// rest is read from the kernel's cache as before. When the manager or
// storage cannot say, everything is dropped, as without keeping.
//
// Hand-off: the write-back of a revoke from WRITE returns storage's
// attributes of the file after it (with storage's proof); they go with the
// ack, and the manager passes them to the next holders in their grant.
// GETATTRs under such a grant (the kernel refreshes what it cached before
// the lease, from every task that enters meanwhile) are answered from them,
// without a storage round trip, until this node changes the file on
// storage (ChangingOnStorage) or the lease goes.
//
// Attributes with the grant: the kernel's upcall from NONE asks for the
// file's attributes too (DFUSE_LEASE_ATTR); the answer carries what a
// GETATTR would be answered with right after the grant (the hand-off's, or
// storage's), which saves the kernel its GETATTR round trip before it
// trusts its cached size and times.
//
// Link counts: the node that links, unlinks or replaces a file by rename
// takes its WRITE lease before replying, so every other node's kernel
// drops the attributes (link count included) it cached under its lease.
// With directory leases the kernel itself holds WRITE on the parents and
// the file for the whole mutation, so the daemon has nothing to take.
//
// Forget: once the kernel has forgotten an inode it caches nothing of the
// file (an inode with dirty pages is not evicted, and its WRITEs are done
// before the FORGET), so the reaper thread writes the buffer cache back,
// gives the lease back and drops the file's state. Per-file state thus
// lives as long as the kernel's inode. An upcall for the file waits for a
// reap in progress, and a reap skips a file asked for again since.
#ifndef DFUSE_IMPL_DFUSE_KERNEL_LEASES_H_
#define DFUSE_IMPL_DFUSE_KERNEL_LEASES_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "impl/common/consistency.h"
#include "kernel/dfuse/dfuse_proto.h"
#include "lease/agent.h"

namespace dfuse {

// dfuse's consistency policy. The client core's hooks keep their defaults:
// the kernel itself waits for its leases before it serves or changes cached
// state, and the daemon only answers its upcalls.
class KernelLeases : public ConsistencyPolicy {
 public:
  explicit KernelLeases(const PolicyContext& ctx);
  ~KernelLeases() override;
  KernelLeases(const KernelLeases&) = delete;
  KernelLeases& operator=(const KernelLeases&) = delete;

  // Connects to the lease manager.
  int Start(CachePolicy* cache, std::string* error) override;
  std::vector<std::string> MountOptions() const override;
  void ServeAttrsFrom(AttrSource source) override;
  void Attach(fuse_session* se) override;
  // The same with the device descriptor itself (tests use a socket).
  void AttachFd(int fd);
  bool Intercept(const fuse_in_header& header, const char* arg, size_t size) override;
  // Gives every lease back and stops the workers.
  void Stop() override;
  uint64_t WriteToken(uint64_t gfid) override;
  std::string FenceProof(uint64_t gfid, uint64_t token) override {
    return agent_ ? agent_->Proof(gfid, token) : "";
  }
  int LinkCountChanged(uint64_t gfid) override;
  bool HandedOver(uint64_t gfid, proto::Attr* attr) override;
  void ChangingOnStorage(uint64_t gfid) override;
  void Forgotten(uint64_t gfid) override;

  // Lease workers block on the manager; there are never more than this.
  static constexpr size_t kMaxWorkers = 256;
  // Byte ranges a refresh of kept pages drops one by one; past it
  // neighbouring ranges merge (a few more pages dropped).
  static constexpr size_t kMaxRefreshRanges = 64;

 private:
  struct Upcall {
    uint64_t unique;
    uint64_t gfid;
    lease::LeaseMode mode;
    bool directory;  // DFUSE_LEASE_DIR
    bool want_attr;  // DFUSE_LEASE_ATTR
  };
  // An upcall not answered yet, queued or being served.
  struct Pending {
    bool interruptible;
    uint64_t gfid;
    lease::LeaseMode mode;
    std::chrono::steady_clock::time_point since;
  };
  // A file this node has asked leases for, until the kernel forgets it.
  struct File {
    uint64_t token = 0;  // the WRITE lease's fencing token, 0 if none
    int serving = 0;     // upcalls being served
    bool forgotten = false;
    bool reaping = false;
    // The kernel said so (DFUSE_LEASE_DIR): it keeps no pages of it, and
    // its revokes have no hand-off to tell what changed.
    bool directory = false;
  };

  void WorkerLoop();
  void Serve(const Upcall& u);
  // Acquires `mode` on gfid through the agent, keeping the file's state
  // (token, reap) as for an upcall. `kernel_asked`: the kernel has the
  // inode (an upcall), so a forget seen before no longer applies. With
  // `grant`, the grant's number for the kernel (LeaseAgent::Acquire).
  int Acquire(uint64_t gfid, lease::LeaseMode mode, bool kernel_asked, bool directory = false,
              uint64_t* grant = nullptr);
  // Fills the answer's attributes (DFUSE_LEASE_ATTR) from attrs_; false if
  // there is no source or it failed (the kernel then asks with a GETATTR).
  bool AttrsForGrant(uint64_t gfid, dfuse_lease_out* out);
  // Answers a pending upcall unless it was answered already (interrupted).
  void Answer(uint64_t unique, int error, const dfuse_lease_out& out);
  // The device (or test socket) descriptor; -1 before Attach.
  int DeviceFd();
  // Writes the reply to the device: an error, else `out`.
  void Reply(uint64_t unique, int error, const dfuse_lease_out& out = {});
  // The agent's revoke handler.
  void Release(uint64_t gfid, lease::LeaseMode to, std::chrono::milliseconds linger);
  // The agent's release_keeping: Release to kNone with the kernel's pages
  // kept; false if they had to go (the write-back failed).
  bool ReleaseKeeping(uint64_t gfid, std::chrono::milliseconds linger);
  // Whether the kernel flagged gfid's upcalls as a directory's.
  bool IsDirectory(uint64_t gfid);
  // Release's work with the kernel's `flags`; returns the write-back's errno.
  int Revoked(uint64_t gfid, lease::LeaseMode to, std::chrono::milliseconds linger, uint32_t flags);
  // The agent's refresh_kept: drops from the kernel's kept pages (and this
  // daemon's buffer cache) the bytes the hand-offs in `since` say were
  // written; false if one of them does not say.
  bool RefreshKept(uint64_t gfid, const std::vector<std::string>& since);
  // Sends the kernel FUSE_NOTIFY_INVAL_INODE for bytes [start, end) of
  // gfid; false if the kernel refused it.
  bool InvalidatePages(uint64_t gfid, uint64_t start, uint64_t end);
  // The agent's before_upgrade: the READ lease is given up for a WRITE
  // request, but the kernel's pages and this daemon's buffer cache stay
  // (nothing is dirty under READ). If another node writes before the grant,
  // the agent calls Release(kNone) first, which drops them. Naming the READ
  // grant given up (`grant`) lets the kernel take in the WRITE answer to
  // the upcall that asked for the upgrade, rather than drop it for racing
  // this release and ask again.
  void KeepForUpgrade(uint64_t gfid, uint64_t grant);
  // Writes notification `code` (the header's error field) with its payload
  // to the device: 0, the write's errno, or -1 if no device is attached.
  int WriteNotify(int32_t code, const void* arg, size_t size);
  // Sends the kernel DFUSE_NOTIFY_RELEASE; blocks until it is done. With
  // `grant` (a revoke's: LeaseAgent::RevokingGrant), the kernel first lets
  // the task that asked for that grant use it once.
  void NotifyKernel(uint64_t gfid, lease::LeaseMode to, std::chrono::milliseconds linger,
                    uint32_t flags, uint64_t grant = 0);
  void ReaperLoop();
  void Reap(uint64_t gfid);
  // The upcalls not answered yet (oldest first), the workers and the
  // reaper's queue, for the stats dump ("kernel_leases").
  nlohmann::json State();

  const PolicyContext ctx_;
  bool dir_leases_ = false;  // the kernel also leases directories
  std::unique_ptr<lease::LeaseAgent> agent_;
  int fd_ = -1;
  AttrSource attrs_;  // set before the session is attached, then only read

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Upcall> queue_;
  std::unordered_map<uint64_t, Pending> pending_;  // by request unique
  std::unordered_map<uint64_t, File> files_;       // by GFID
  std::vector<std::thread> workers_;
  size_t idle_ = 0;
  bool stopping_ = false;
  std::condition_variable reap_cv_;  // reap_queue_ grew, or a reap ended
  std::deque<uint64_t> reap_queue_;
  std::thread reaper_;

  Counter* upcalls_;
  Counter* dir_upcalls_;  // of upcalls_, for directories
  Counter* interrupted_;
  Counter* releases_;
  Counter* dir_releases_;  // of releases_, of directories
  Counter* release_errors_;
  Counter* durable_flushes_;
  Counter* attrs_handed_over_;
  Counter* attrs_with_grant_;
  Counter* ranges_invalidated_;
  Latency* upcall_latency_;
  Latency* kernel_release_latency_;
  Counter* files_reaped_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_DFUSE_KERNEL_LEASES_H_
