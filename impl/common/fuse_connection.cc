#include "impl/common/fuse_connection.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace dfuse {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); i++) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string octal = field.substr(i + 1, 3);
      if (octal.find_first_not_of("01234567") == std::string::npos) {
        out.push_back(static_cast<char>(std::stoi(octal, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

}  // namespace

int FuseConnectionIn(std::istream& mountinfo, const std::string& mountpoint) {
  int conn = -1;
  std::string line;
  while (std::getline(mountinfo, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    std::istringstream in(line);
    std::string id, parent, dev, root, point;
    if (!(in >> id >> parent >> dev >> root >> point)) continue;
    if (Unescape(point) != mountpoint) continue;
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    // fuse, fuse.NAME, fuseblk, and dfuse.ko's dfuse / dfuse.NAME.
    if (fstype.rfind("fuse", 0) != 0 && fstype.rfind("dfuse", 0) != 0) continue;
    const size_t colon = dev.find(':');
    if (colon == std::string::npos || dev.substr(0, colon) != "0") continue;  // anonymous
    try {
      conn = std::stoi(dev.substr(colon + 1));
    } catch (const std::exception&) {
      continue;
    }
  }
  return conn;
}

int FuseConnectionOf(const std::string& mountpoint) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  return mountinfo ? FuseConnectionIn(mountinfo, mountpoint) : -1;
}

namespace {

// Writes to `dir`/conn/abort. False when the file is not there.
bool WriteAbort(const std::string& dir, int conn) {
  std::ofstream abort(dir + "/" + std::to_string(conn) + "/abort");
  if (!abort) return false;
  abort << "1";
  abort.flush();
  return static_cast<bool>(abort);
}

// Mounts the control file system `type` on a private directory for one
// abort. Both control file systems are single-instance: any mount of one
// shows every connection of its driver.
bool AbortThroughPrivateMount(const char* type, int conn) {
  char dir[] = "/tmp/dfuse-ctl-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return false;
  bool done = false;
  if (::mount("none", dir, type, MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) {
    done = WriteAbort(dir, conn);
    ::umount2(dir, MNT_DETACH);
  }
  ::rmdir(dir);
  return done;
}

}  // namespace

bool AbortFuseConnection(int conn, std::string* error) {
  if (conn < 0) {
    *error = "no FUSE connection known";
    return false;
  }
  if (WriteAbort("/sys/fs/fuse/connections", conn) ||
      WriteAbort("/sys/fs/dfuse/connections", conn)) {
    return true;
  }
  // Not every system mounts them (systemd does at boot; a minimal system
  // or a container may not).
  for (const char* type : {"fusectl", "dfusectl"}) {
    if (AbortThroughPrivateMount(type, conn)) return true;
  }
  *error = "connection " + std::to_string(conn) +
           " is in no control file system (fusectl or dfusectl), mounted or mountable here";
  return false;
}

bool SetMaxDirtyRatio(int conn, int percent, std::string* error) {
  // A FUSE mount's backing device is named after its anonymous device,
  // major 0 and the connection number as minor (fuse_bdi_init).
  const std::string path = "/sys/class/bdi/0:" + std::to_string(conn) + "/max_ratio";
  std::ofstream out(path);
  if (out) {
    out << percent;
    out.flush();
  }
  if (!out) {
    *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace dfuse
