// Serializes the calls that take a name away in a directory (Unlink, Rmdir,
// Rename), so that the file such a call looked up under a name is the file
// it removed or replaced: the reply names that file (UnlinkReply), and a
// client revokes other nodes' cached attributes of it. Creating calls need
// no lock: they never take a name away, so they cannot change what a
// looked-up name refers to.
#ifndef DFUSE_STORAGE_DIR_LOCKS_H_
#define DFUSE_STORAGE_DIR_LOCKS_H_

#include <array>
#include <cstdint>
#include <mutex>
#include <utility>

namespace dfuse::storage {

class DirLocks {
 public:
  // Holds one or two directories' locks until destroyed.
  class Guard {
   public:
    Guard(std::mutex* first, std::mutex* second) : first_(*first), second_() {
      if (second != nullptr) second_ = std::unique_lock<std::mutex>(*second);
    }

   private:
    std::unique_lock<std::mutex> first_;
    std::unique_lock<std::mutex> second_;
  };

  Guard Lock(uint64_t dir) { return Guard(&Stripe(dir), nullptr); }

  // Both directories of a rename, in one global order (stripes by address)
  // so that two renames between the same directories cannot deadlock.
  Guard Lock(uint64_t dir_a, uint64_t dir_b) {
    std::mutex* a = &Stripe(dir_a);
    std::mutex* b = &Stripe(dir_b);
    if (a == b) return Guard(a, nullptr);
    if (b < a) std::swap(a, b);
    return Guard(a, b);
  }

 private:
  std::mutex& Stripe(uint64_t dir) { return stripes_[dir % stripes_.size()]; }

  std::array<std::mutex, 64> stripes_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_DIR_LOCKS_H_
