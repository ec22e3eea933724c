// Whether a (mapped) caller may do something to a file, decided from the
// file's mode bits, owner and group as Linux decides it for a process with
// these ids: the storage service's own check, so that a client cannot do
// more than its export rule lets its users do, whatever its kernel allowed.
// POSIX ACLs on the export are not read; uid 0 (an unsquashed root) may do
// anything but execute a file no one may execute.
#ifndef DFUSE_STORAGE_PERMISSION_H_
#define DFUSE_STORAGE_PERMISSION_H_

#include <sys/stat.h>

#include <string_view>

#include "util/caller.h"

namespace dfuse::storage {

// Bits of a permission mask, as access(2)'s R_OK, W_OK, X_OK.
inline constexpr int kMayRead = 4;
inline constexpr int kMayWrite = 2;
inline constexpr int kMayExec = 1;

inline bool Privileged(const Caller& caller) { return caller.uid == 0; }

bool InGroup(const Caller& caller, gid_t gid);

// 0 if `caller` has every permission of `mask` on a file with `st`, EACCES
// otherwise.
int Permission(const Caller& caller, const struct stat& st, int mask);

// Whether `caller` owns the file (or is privileged): what chmod, explicit
// times and the xattrs of ACLs need.
inline bool OwnerOrPrivileged(const Caller& caller, const struct stat& st) {
  return Privileged(caller) || caller.uid == st.st_uid;
}

// Whether the sticky bit of `dir` keeps `caller` from removing or replacing
// the entry of a file owned by `owner`: only the file's owner, the
// directory's owner or the privileged may (Linux says EPERM).
inline bool StickyForbids(const Caller& caller, const struct stat& dir, uint32_t owner) {
  return (dir.st_mode & S_ISVTX) && !Privileged(caller) && caller.uid != owner &&
         caller.uid != dir.st_uid;
}

// 0 if `caller` may read the extended attribute `name` of a file with `st`
// (`change` false), or set or remove it (true; `remove` says which), as
// Linux's xattr_permission and capability checks decide: user.* by the
// file's read or write permission, on regular files and directories only;
// trusted.* for the privileged only (ENODATA to read, EPERM to change);
// other names changed by the privileged only, but POSIX ACLs by the owner
// too, and security.capability removed by anyone who may write the file
// (the kernel removes it so as the writer of a file that had it).
int XattrPermission(const Caller& caller, const struct stat& st, std::string_view name, bool change,
                    bool remove);

// Whether `caller` sees `name` in a listing (trusted.* only the privileged).
bool XattrListed(const Caller& caller, std::string_view name);

// The set-ID bits a change of data by an unprivileged caller takes away
// from a file with `mode`, as Linux's should_remove_suid decides: S_ISUID,
// and S_ISGID where the group may execute (without it, S_ISGID marks
// mandatory locking and stays).
mode_t SetIdBitsToDrop(mode_t mode);

// What a write, truncate or fallocate by an unprivileged caller takes away
// from the open file `fd`: SetIdBitsToDrop and the file capabilities
// (security.capability), as the kernel does for a local writer. The
// storage service does it itself for every such call, whatever the
// client's kernel did, so that no client (dfuse.ko trusts its lease
// instead of asking before every write) can keep them. 0 or an errno.
int DropPrivileges(int fd);

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_PERMISSION_H_
