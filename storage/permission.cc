#include "storage/permission.h"

#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>

namespace dfuse::storage {

bool InGroup(const Caller& caller, gid_t gid) {
  return caller.gid == gid ||
         std::find(caller.groups.begin(), caller.groups.end(), gid) != caller.groups.end();
}

int Permission(const Caller& caller, const struct stat& st, int mask) {
  if (Privileged(caller)) {
    // Root reads and writes anything; it executes a regular file only if
    // someone may, and searches any directory.
    const bool exec_ok = !(mask & kMayExec) || S_ISDIR(st.st_mode) || (st.st_mode & 0111);
    return exec_ok ? 0 : EACCES;
  }
  // Linux takes the first class that matches, even if another would allow
  // more: an owner denied by the owner bits is denied.
  int granted;
  if (caller.uid == st.st_uid) {
    granted = (st.st_mode >> 6) & 7;
  } else if (InGroup(caller, st.st_gid)) {
    granted = (st.st_mode >> 3) & 7;
  } else {
    granted = st.st_mode & 7;
  }
  return (mask & ~granted) == 0 ? 0 : EACCES;
}

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

int XattrPermission(const Caller& caller, const struct stat& st, std::string_view name, bool change,
                    bool remove) {
  if (Privileged(caller)) return 0;
  if (StartsWith(name, "trusted.")) return change ? EPERM : ENODATA;
  if (StartsWith(name, "user.")) {
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return change ? EPERM : ENODATA;
    return Permission(caller, st, change ? kMayWrite : kMayRead);
  }
  if (!change) return 0;
  if (remove && name == "security.capability") return Permission(caller, st, kMayWrite);
  if (StartsWith(name, "system.posix_acl_") && caller.uid == st.st_uid) return 0;
  return EPERM;
}

mode_t SetIdBitsToDrop(mode_t mode) {
  mode_t drop = mode & S_ISUID;
  if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) drop |= S_ISGID;
  return drop;
}

int DropPrivileges(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return 0;
  if (const mode_t drop = SetIdBitsToDrop(st.st_mode);
      drop != 0 && ::fchmod(fd, st.st_mode & 07777 & ~drop) != 0) {
    return errno;
  }
  // ENODATA (no capabilities) is the common answer: one system call.
  if (::fremovexattr(fd, "security.capability") != 0 && errno != ENODATA && errno != ENOTSUP) {
    return errno;
  }
  return 0;
}

bool XattrListed(const Caller& caller, std::string_view name) {
  return Privileged(caller) || !StartsWith(name, "trusted.");
}

}  // namespace dfuse::storage
