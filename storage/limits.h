// Bounds on what one request may ask for. Clients must stay within them and
// configure their channel with kMaxMessageBytes.
#ifndef DFUSE_STORAGE_LIMITS_H_
#define DFUSE_STORAGE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace dfuse::storage {

// File data moved by one Read or Write (sum over its extents).
inline constexpr uint64_t kMaxIoBytes = uint64_t{64} << 20;
// gRPC message size in both directions: kMaxIoBytes of data plus room for the
// per-extent framing of a full batch.
inline constexpr int kMaxMessageBytes = static_cast<int>(kMaxIoBytes + (1 << 20));
// Extents of one Read or chunks of one Write.
inline constexpr size_t kMaxExtents = 4096;
// Entries of one ReadDir reply; larger requests get this many.
inline constexpr uint32_t kMaxReadDirEntries = 4096;

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_LIMITS_H_
