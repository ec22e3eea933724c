#include "impl/common/revoke.h"

#include <spdlog/spdlog.h>

namespace dfuse {

int WriteBackForRevoke(BufferCache* cache, uint64_t gfid, lease::LeaseMode to,
                       Counter* durable_flushes, ProvenHandoff* after) {
  // One call writes the dirty data and the kept times and makes them
  // durable; a file with nothing dirty needs none.
  bool durable = false;
  int err = cache->FlushDurable(gfid, &durable, nullptr, after);
  if (err != 0 && after != nullptr) *after = {};
  if (err == 0 && durable) durable_flushes->Add();
  // Nothing to write back: one call without data still gets storage's
  // hand-off, so the next holders learn the file's attributes and what
  // changed under this lease (nothing, or what went to storage earlier)
  // instead of asking, or dropping every page they kept. Without it they
  // do just that: its failure costs no data.
  if (err == 0 && !durable && after != nullptr) {
    const int sync_err = cache->SyncForHandoff(gfid, after);  // *after stays empty on error
    if (sync_err != 0) spdlog::debug("revoke of {:#x}: no hand-off (errno {})", gfid, sync_err);
  }
  if (err != 0) {
    // The storage client has already waited out its unavailable timeout.
    // Keeping the data past the ack would let it reach storage after the
    // next holder's writes (or be served to readers here without a
    // lease), so it is given up now and the loss is reported to the
    // application at its next fsync or close; the next holder's newer
    // fencing token refuses anything of ours still on its way.
    spdlog::error("revoke of {:#x}: write-back failed (errno {}): unwritten data discarded, "
                  "reported at the next fsync/close",
                  gfid, err);
    cache->DiscardDirty(gfid);
  }
  // Below WRITE the kernel owns the file's times no more.
  cache->DropTimes(gfid);
  if (to == lease::LeaseMode::kNone) cache->Invalidate(gfid);
  return err;
}

}  // namespace dfuse
