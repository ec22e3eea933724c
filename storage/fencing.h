// Fencing: the highest token seen per GFID. A writer whose lease was revoked
// or expired holds an older token than the current holder, so its late
// writes are refused instead of overwriting newer data.
#ifndef DFUSE_STORAGE_FENCING_H_
#define DFUSE_STORAGE_FENCING_H_

#include <array>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace dfuse::storage {

class FencingTable {
 public:
  // Admits a data-changing call on `gfid` carrying `token`. Returns ESTALE
  // if a higher token was seen before; otherwise records the token and
  // returns 0 with `*lock` held: the caller keeps it until its change is
  // done, so a call admitted under an old token cannot land after a call
  // carrying a newer one. Token 0 ("no lease") is always admitted, unlocked.
  int Admit(uint64_t gfid, uint64_t token, std::unique_lock<std::mutex>* lock);

 private:
  // Striped so that calls on different files rarely contend.
  struct Stripe {
    std::mutex mu;
    std::unordered_map<uint64_t, uint64_t> highest;
  };
  static constexpr size_t kStripes = 64;
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_FENCING_H_
