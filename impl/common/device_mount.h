// Mounting a FUSE-compatible device other than /dev/fuse (ARCHITECTURE.md
// section 6): libfuse3 only opens /dev/fuse, but it accepts "/dev/fd/N" as a
// mountpoint and then uses the already-mounted descriptor N. So the daemon
// opens the device (e.g. /dev/dfuse from dfuse.ko), mounts it itself and
// hands libfuse the descriptor.
#ifndef DFUSE_IMPL_COMMON_DEVICE_MOUNT_H_
#define DFUSE_IMPL_COMMON_DEVICE_MOUNT_H_

#include <string>
#include <vector>

namespace dfuse {

struct DeviceMount {
  std::string device;      // e.g. /dev/dfuse
  std::string fstype;      // the kernel's file system type, e.g. "dfuse"
  std::string mountpoint;  // absolute
  // FUSE -o options as for libfuse: fsname= and subtype= name the mount,
  // mount flags (ro, nosuid, noatime, ...) and the kernel's own options
  // (allow_other, default_permissions, max_read=, leases) are applied;
  // anything else is an error.
  std::vector<std::string> options;
};

// What mount(2) gets for a DeviceMount, apart from the fd= and ids.
struct MountRequest {
  std::string source;
  std::string type;
  unsigned long flags = 0;
  std::string data;  // the kernel options, comma-separated (without fd=...)
};

// Translates m's options; false with a one-line *error for one the device
// does not support.
bool TranslateMountOptions(const DeviceMount& m, MountRequest* out, std::string* error);

// Returns the descriptor of the mounted device (pass "/dev/fd/<fd>" to
// fuse_session_mount), or -1 with a one-line *error.
int MountFuseDevice(const DeviceMount& m, std::string* error);

// Whether `fstype` is a file system type the running kernel knows.
bool KernelHasFilesystem(const std::string& fstype);

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_DEVICE_MOUNT_H_
