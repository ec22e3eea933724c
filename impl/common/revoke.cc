#include "impl/common/revoke.h"

#include <spdlog/spdlog.h>

namespace dfuse {

int WriteBackForRevoke(BufferCache* cache, StorageClient* storage, uint64_t gfid,
                       lease::LeaseMode to, Counter* durable_flushes) {
  uint64_t flushed = 0;
  int err = cache->Flush(gfid, &flushed);
  if (err == 0 && flushed > 0) {
    durable_flushes->Add();
    err = storage->Fsync(gfid, /*datasync=*/false);
  }
  if (err != 0) spdlog::error("revoke of {:#x}: write-back failed: errno {}", gfid, err);
  if (to == lease::LeaseMode::kNone) cache->Invalidate(gfid);
  return err;
}

}  // namespace dfuse
