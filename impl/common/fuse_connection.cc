#include "impl/common/fuse_connection.h"

#include <cerrno>
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

bool AbortFuseConnection(int conn, std::string* error) {
  if (conn < 0) {
    *error = "no FUSE connection known";
    return false;
  }
  for (const char* dir : {"/sys/fs/fuse/connections/", "/sys/fs/dfuse/connections/"}) {
    const std::string path = dir + std::to_string(conn) + "/abort";
    std::ofstream abort(path);
    if (!abort) continue;
    abort << "1";
    abort.flush();
    if (abort) return true;
  }
  *error = "connection " + std::to_string(conn) +
           " is in no mounted control file system (fusectl or dfusectl): " + std::strerror(errno);
  return false;
}

}  // namespace dfuse
