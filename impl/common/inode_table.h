// Lookup accounting for the kernel's references to inodes (nodeid = GFID).
#ifndef DFUSE_IMPL_COMMON_INODE_TABLE_H_
#define DFUSE_IMPL_COMMON_INODE_TABLE_H_

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace dfuse {

// Every reply that hands the kernel an inode (lookup, create, mknod, mkdir,
// symlink, link, readdirplus) adds one lookup; FORGET takes them back. When a
// count reaches zero the kernel holds no reference and per-file state can go.
//
// What a reference and the last FORGET mean for per-file state (the caches'
// and the policy's) runs in `then` / `on_last`, never interleaved for one
// GFID. Otherwise a FORGET of an evicted inode, handled by one thread, could
// drop the state another thread had just set up for the new inode a LOOKUP
// gave the kernel under the same nodeid (the count went to zero and back to
// one between the FORGET's unref and its clean-up).
class InodeTable {
 public:
  void Ref(uint64_t gfid, uint32_t mode, const std::function<void()>& then = {}) {
    std::lock_guard<std::mutex> life(LifecycleMutex(gfid));
    {
      std::lock_guard<std::mutex> l(mu_);
      Inode& i = inodes_[gfid];
      i.nlookup++;
      i.type = mode & S_IFMT;
    }
    if (then) then();
  }

  bool IsRegular(uint64_t gfid) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = inodes_.find(gfid);
    return it != inodes_.end() && S_ISREG(it->second.type);
  }

  // Returns true when the last reference went away, after running `on_last`.
  bool Unref(uint64_t gfid, uint64_t n, const std::function<void()>& on_last = {}) {
    std::lock_guard<std::mutex> life(LifecycleMutex(gfid));
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = inodes_.find(gfid);
      if (it == inodes_.end()) return false;
      if (it->second.nlookup > n) {
        it->second.nlookup -= n;
        return false;
      }
      inodes_.erase(it);
    }
    if (on_last) on_last();
    return true;
  }

  // Runs `then` if the kernel holds no reference to gfid, with no reference
  // taken or dropped meanwhile.
  void IfUnreferenced(uint64_t gfid, const std::function<void()>& then) {
    std::lock_guard<std::mutex> life(LifecycleMutex(gfid));
    {
      std::lock_guard<std::mutex> l(mu_);
      if (inodes_.count(gfid) != 0) return;
    }
    then();
  }

  // The kernel asks for security.capability before every write (FUSE clears
  // SB_NOSEC), so whether a file has one is remembered here: -1 unknown,
  // 0 absent, 1 present.
  int CapabilityState(uint64_t gfid) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = inodes_.find(gfid);
    return it == inodes_.end() ? -1 : it->second.capability;
  }
  void SetCapabilityState(uint64_t gfid, int state) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = inodes_.find(gfid);
    if (it != inodes_.end()) it->second.capability = static_cast<int8_t>(state);
  }

  size_t size() {
    std::lock_guard<std::mutex> l(mu_);
    return inodes_.size();
  }

 private:
  struct Inode {
    uint64_t nlookup = 0;
    uint32_t type = 0;  // S_IFMT bits
    int8_t capability = -1;
  };
  std::mutex& LifecycleMutex(uint64_t gfid) { return lifecycle_[gfid % lifecycle_.size()]; }

  // Serialize a GFID's references with its clean-up; striped so that
  // unrelated files' callbacks run in parallel. Taken before mu_.
  std::array<std::mutex, 64> lifecycle_;
  std::mutex mu_;  // guards inodes_
  std::unordered_map<uint64_t, Inode> inodes_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_INODE_TABLE_H_
