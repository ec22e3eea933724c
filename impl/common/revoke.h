// What every mode's revoke handler does with the userspace buffer cache
// before the ack (ARCHITECTURE.md section 5): shared by writethrough's
// LeaseGate and dfuse's KernelLeases.
#ifndef DFUSE_IMPL_COMMON_REVOKE_H_
#define DFUSE_IMPL_COMMON_REVOKE_H_

#include <cstdint>

#include "impl/common/buffer_cache.h"
#include "lease/agent.h"
#include "util/stats.h"

namespace dfuse {

// Makes gfid's dirty data durable on storage (written back with its kept
// times, the last call also durable, when there was any: the ack promises
// stable storage, not merely sent data; `durable_flushes` counts those)
// and, when the lease drops to NONE, drops the cached copy (a downgrade to
// READ keeps the now clean data). When the write-back fails for good the
// dirty data is discarded and the error latched for the application's next
// fsync/close (BufferCache::TakeWriteError): after the ack this node holds
// nothing that could overwrite the next holder's data. *after (optional,
// only for a WRITE lease given up): what storage said the durable
// write-back left the file as, for the next holder; with nothing to write
// back, a call without data asks for it. Returns 0 or the write-back's
// errno.
int WriteBackForRevoke(BufferCache* cache, uint64_t gfid, lease::LeaseMode to,
                       Counter* durable_flushes, ProvenHandoff* after = nullptr);

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_REVOKE_H_
