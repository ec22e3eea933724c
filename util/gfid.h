// Global file identifiers: the same 64-bit id for a file on every node.
#ifndef DFUSE_UTIL_GFID_H_
#define DFUSE_UTIL_GFID_H_

#include <cstdint>

namespace dfuse {

// A GFID is the storage shard id in the high 16 bits and the shard-local id
// (the backing file's inode number) below. Shard ids start at 1, so a GFID is
// never 0 and never FUSE_ROOT_ID (1).
inline constexpr int kShardShift = 48;
inline constexpr uint64_t kLocalMask = (uint64_t{1} << kShardShift) - 1;
inline constexpr uint32_t kMaxShardId = 0xffff;

constexpr uint64_t MakeGfid(uint32_t shard, uint64_t local) {
  return (uint64_t{shard} << kShardShift) | (local & kLocalMask);
}
constexpr uint32_t ShardOf(uint64_t gfid) { return static_cast<uint32_t>(gfid >> kShardShift); }
constexpr uint64_t LocalOf(uint64_t gfid) { return gfid & kLocalMask; }

}  // namespace dfuse

#endif  // DFUSE_UTIL_GFID_H_
