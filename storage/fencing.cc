#include "storage/fencing.h"

#include <cerrno>

namespace dfuse::storage {

int FencingTable::Admit(uint64_t gfid, uint64_t token, std::unique_lock<std::mutex>* lock) {
  if (token == 0) return 0;
  // GFIDs of one shard differ in their low bits (inode numbers).
  Stripe& s = stripes_[gfid % kStripes];
  std::unique_lock<std::mutex> l(s.mu);
  uint64_t& highest = s.highest[gfid];
  if (token < highest) return ESTALE;
  highest = token;
  *lock = std::move(l);
  return 0;
}

}  // namespace dfuse::storage
