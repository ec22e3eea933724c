// How a client mode sets up the kernel's caches (ARCHITECTURE.md section 7);
// how it keeps them consistent is its ConsistencyPolicy (consistency.h).
#ifndef DFUSE_IMPL_COMMON_POLICY_H_
#define DFUSE_IMPL_COMMON_POLICY_H_

#include <string>

namespace dfuse {

struct CachePolicy {
  std::string mode;  // "writethrough", "weakwriteback", ...
  // Kernel page cache in write-back mode (FUSE_WRITEBACK_CACHE).
  bool writeback_cache = false;
  // Keep the kernel's cached pages across opens (FOPEN_KEEP_CACHE).
  bool keep_cache = false;
  // Let the kernel drop pages when it sees mtime or size change.
  bool auto_inval_data = false;
  // Write back the buffer cache when a file is closed (close-to-open).
  bool flush_on_close = true;
  // Kernel attribute, entry and negative-entry cache lifetimes, seconds.
  double attr_timeout = 0;
  // Regular files' attribute lifetime when kernel leases cover them (the
  // kernel drops them on every revoke); negative: attr_timeout.
  double leased_attr_timeout = -1;
  double entry_timeout = 0;
  double negative_timeout = 0;
  // The kernel keeps directories' names and attributes under directory
  // leases (dfuse.ko's "dirleases"); their attributes then also live
  // leased_attr_timeout.
  bool dir_leases = false;
  // The kernel keeps a revoked lease while it is using it, up to the rest
  // of the manager's hold (Hello.lingers), instead of the manager waiting
  // the whole hold out before it revokes.
  bool linger = false;
  // Serve extended attributes. Without them every xattr call is answered
  // ENOSYS, after which the kernel stops asking: FUSE mounts are not
  // SB_NOSEC, so otherwise each write(2) first asks for security.capability
  // (a round trip). Only for modes whose consistency does not hook that
  // lookup (ConsistencyPolicy::WriteStarting).
  bool xattrs = true;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_POLICY_H_
