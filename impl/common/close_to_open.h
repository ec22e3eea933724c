// Close-to-open consistency for a write-through kernel cache: an open(2)
// that starts after another node's close(2) returned sees that node's data.
// Close writes the buffer cache back (CachePolicy::flush_on_close); every
// open asks storage for the file's version, which drops the buffer cache's
// clean data if another node changed it, and the kernel drops its pages at
// every open (no FOPEN_KEEP_CACHE). With a write-through kernel cache the
// kernel takes the size storage reports, so nothing else is needed.
// writethrough without a lease manager runs with this policy.
#ifndef DFUSE_IMPL_COMMON_CLOSE_TO_OPEN_H_
#define DFUSE_IMPL_COMMON_CLOSE_TO_OPEN_H_

#include <cstdint>

#include "impl/common/consistency.h"

namespace dfuse {

class CloseToOpen : public ConsistencyPolicy {
 public:
  explicit CloseToOpen(const PolicyContext& ctx) : ctx_(ctx) {}

  int Open(uint64_t gfid, pid_t caller, fuse_file_info* fi) override;

 protected:
  // Asks storage for gfid's attributes and records its version. *changed:
  // another node changed the file since this node last knew its version.
  // ENOENT if another node removed the file.
  int Revalidate(uint64_t gfid, proto::Attr* attr, bool* changed);

  const PolicyContext ctx_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_CLOSE_TO_OPEN_H_
