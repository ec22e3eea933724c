// Conversion of stat(2) results into protocol attributes.
#ifndef DFUSE_STORAGE_ATTR_H_
#define DFUSE_STORAGE_ATTR_H_

#include <sys/stat.h>

#include <cstdint>

#include "proto/storage.pb.h"

namespace dfuse::storage {

void FillAttr(const struct stat& st, uint64_t gfid, uint64_t generation, proto::Attr* attr);

// Nanoseconds since the epoch <-> struct timespec (tv_nsec always in [0, 1e9)).
int64_t ToNanos(const struct timespec& ts);
struct timespec FromNanos(int64_t ns);

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_ATTR_H_
