#include "impl/common/close_to_open.h"

#include <cerrno>

namespace dfuse {

int CloseToOpen::Revalidate(uint64_t gfid, proto::Attr* attr, bool* changed) {
  const int err = ctx_.storage->GetAttr(gfid, attr);
  // Storage's ESTALE means another node removed the file: to the opener
  // that is a name that is gone (as an open racing an unlink), not a stale
  // handle for the VFS to retry.
  if (err == ESTALE) return ENOENT;
  if (err != 0) return err;
  *changed = ctx_.cache->ObserveVersion(gfid, attr->size(), attr->mtime_ns(), /*own=*/false);
  return 0;
}

int CloseToOpen::Open(uint64_t gfid, pid_t, fuse_file_info*) {
  proto::Attr attr;
  bool changed;
  return Revalidate(gfid, &attr, &changed);
}

}  // namespace dfuse
