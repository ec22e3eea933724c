// The daemon's side of dfuse.ko's kernel-level leases (ARCHITECTURE.md
// sections 5-7; protocol in kernel/dfuse/dfuse_proto.h).
//
// Acquire: the kernel asks (DFUSE_LEASE) before it serves or changes cached
// state; the request is taken out of the FUSE request loop and answered
// from a lease worker once the lease manager has granted the mode, so a
// slow grant never holds a loop thread that the kernel's write-back needs.
//
// Revoke: the agent's revoke thread sends DFUSE_NOTIFY_RELEASE, which
// returns once the kernel has drained its I/O, written its dirty pages and
// times back through this daemon and dropped what the new mode no longer
// covers; then the buffer cache is flushed and fsynced to storage (a
// revoke ack promises durability), dropped when the lease is gone, and the
// agent acks. The kernel drops a grant that raced the notify and asks
// again; the agent never answers an acquire with a lease whose revoke is
// still being handled.
#ifndef DFUSE_IMPL_DFUSE_KERNEL_LEASES_H_
#define DFUSE_IMPL_DFUSE_KERNEL_LEASES_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "impl/common/consistency.h"
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
  std::vector<std::string> MountOptions() const override { return {"leases"}; }
  void Attach(fuse_session* se) override;
  // The same with the device descriptor itself (tests use a socket).
  void AttachFd(int fd);
  bool Intercept(const fuse_in_header& header, const char* arg, size_t size) override;
  // Gives every lease back and stops the workers.
  void Stop() override;
  uint64_t WriteToken(uint64_t gfid) override;

  // Lease workers block on the manager; there are never more than this.
  static constexpr size_t kMaxWorkers = 256;

 private:
  struct Upcall {
    uint64_t unique;
    uint64_t gfid;
    lease::LeaseMode mode;
  };
  struct Pending {
    bool interruptible;
  };

  void WorkerLoop();
  void Serve(const Upcall& u);
  // Answers a pending upcall unless it was answered already (interrupted).
  void Answer(uint64_t unique, int error, uint32_t mode);
  // Writes the reply to the device.
  void Reply(uint64_t unique, int error, uint32_t mode);
  // The agent's revoke handler.
  void Release(uint64_t gfid, lease::LeaseMode to);

  const PolicyContext ctx_;
  std::unique_ptr<lease::LeaseAgent> agent_;
  int fd_ = -1;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Upcall> queue_;
  std::unordered_map<uint64_t, Pending> pending_;  // by request unique
  std::unordered_map<uint64_t, uint64_t> tokens_;  // WRITE leases' fencing tokens
  std::unordered_set<uint64_t> granted_;           // files ever granted, for Shutdown
  std::vector<std::thread> workers_;
  size_t idle_ = 0;
  bool stopping_ = false;

  Counter* upcalls_;
  Counter* interrupted_;
  Counter* releases_;
  Counter* release_errors_;
  Counter* durable_flushes_;
  Latency* upcall_latency_;
  Latency* kernel_release_latency_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_DFUSE_KERNEL_LEASES_H_
