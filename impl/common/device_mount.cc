#include "impl/common/device_mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

namespace dfuse {

namespace {

const std::map<std::string, unsigned long>& MountFlags() {
  static const std::map<std::string, unsigned long> kFlags = {
      {"ro", MS_RDONLY},       {"nosuid", MS_NOSUID},         {"nodev", MS_NODEV},
      {"noexec", MS_NOEXEC},   {"noatime", MS_NOATIME},       {"nodiratime", MS_NODIRATIME},
      {"sync", MS_SYNCHRONOUS}, {"dirsync", MS_DIRSYNC},      {"relatime", MS_RELATIME},
      {"lazytime", MS_LAZYTIME}};
  return kFlags;
}

// Options that only mean something to libfuse or mount(8) when mounting
// /dev/fuse; harmless to skip here.
bool IsIgnored(const std::string& key) {
  return key == "rw" || key == "suid" || key == "dev" || key == "exec" || key == "atime" ||
         key == "auto_unmount" || key == "nonempty";
}

bool IsKernelOption(const std::string& key) {
  return key == "allow_other" || key == "default_permissions" || key == "max_read" ||
         key == "blksize" || key == "leases" || key == "dirleases";
}

}  // namespace

bool KernelHasFilesystem(const std::string& fstype) {
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (line.substr(tab == std::string::npos ? 0 : tab + 1) == fstype) return true;
  }
  return false;
}

bool TranslateMountOptions(const DeviceMount& m, MountRequest* out, std::string* error) {
  out->source = m.fstype;
  out->type = m.fstype;
  out->flags = MS_NOSUID | MS_NODEV;
  out->data.clear();
  for (const std::string& opt : m.options) {
    const std::string key = opt.substr(0, opt.find('='));
    const std::string value = opt.size() > key.size() ? opt.substr(key.size() + 1) : "";
    if (key == "fsname") {
      out->source = value;
    } else if (key == "subtype") {
      out->type = m.fstype + "." + value;
    } else if (MountFlags().count(key)) {
      out->flags |= MountFlags().at(key);
    } else if (IsKernelOption(key)) {
      out->data += (out->data.empty() ? "" : ",") + opt;
    } else if (!IsIgnored(key)) {
      *error = "mount option '" + opt + "' is not supported with " + m.device;
      return false;
    }
  }
  return true;
}

int MountFuseDevice(const DeviceMount& m, std::string* error) {
  MountRequest req;
  if (!TranslateMountOptions(m, &req, error)) return -1;
  const int fd = open(m.device.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open " + m.device + ": " + std::strerror(errno);
    return -1;
  }
  struct stat st;
  if (stat(m.mountpoint.c_str(), &st) != 0) {
    *error = "mountpoint " + m.mountpoint + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  char rootmode[16];
  std::snprintf(rootmode, sizeof(rootmode), "%o", st.st_mode & S_IFMT);
  std::string data = "fd=" + std::to_string(fd) + ",rootmode=" + rootmode + ",user_id=" +
                     std::to_string(getuid()) + ",group_id=" + std::to_string(getgid());
  if (!req.data.empty()) data += "," + req.data;
  if (mount(req.source.c_str(), m.mountpoint.c_str(), req.type.c_str(), req.flags,
            data.c_str()) != 0) {
    *error = "mounting " + m.device + " (type " + req.type + ") on " + m.mountpoint + ": " +
             std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace dfuse
