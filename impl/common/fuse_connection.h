// A mount's FUSE connection, as the kernel's control file systems name it
// (fusectl at /sys/fs/fuse/connections, dfuse.ko's dfusectl at
// /sys/fs/dfuse/connections), and aborting it.
//
// A daemon that has to leave while its mount is still in use aborts its own
// connection first. Otherwise one of its threads may be asleep in the
// kernel waiting for a request only this daemon could answer (a page
// invalidation waits for a page that a queued READ holds locked), which
// even SIGKILL waits for: the process would never end, and its open device
// would keep the request from ever failing.
#ifndef DFUSE_IMPL_COMMON_FUSE_CONNECTION_H_
#define DFUSE_IMPL_COMMON_FUSE_CONNECTION_H_

#include <istream>
#include <string>

namespace dfuse {

// The connection number of the FUSE mount on `mountpoint` in `mountinfo`
// (the format of /proc/self/mountinfo; the last mount there counts), or -1.
// Reads no file of the mount, so it cannot wait on the daemon itself.
int FuseConnectionIn(std::istream& mountinfo, const std::string& mountpoint);
// The same for this process's mounts.
int FuseConnectionOf(const std::string& mountpoint);

// Aborts connection `conn`: every request waiting on it fails with ENOTCONN.
// Where neither control file system is mounted, mounts one on a private
// directory for the write (needs CAP_SYS_ADMIN, as mounting FUSE does).
// Returns false with *error if no control file system has it.
bool AbortFuseConnection(int conn, std::string* error);

// Lets connection `conn`'s kernel page cache hold up to `percent` of the
// machine's dirty-page limit (its backing device's max_ratio, 1 by FUSE's
// default, which throttles a write-back cache to a few MB of dirty pages and
// so to about one request per written page). Needs root. Returns false with
// *error if the setting could not be written.
bool SetMaxDirtyRatio(int conn, int percent, std::string* error);

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_FUSE_CONNECTION_H_
