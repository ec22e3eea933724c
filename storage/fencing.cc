#include "storage/fencing.h"

#include <sys/xattr.h>

#include <cerrno>

namespace dfuse::storage {
namespace {

constexpr size_t kTokenBytes = 8;

// Reads the file's stored highest token: 0 if it has none.
int LoadToken(int fd, uint64_t* token) {
  unsigned char buf[kTokenBytes];
  const ssize_t n = ::fgetxattr(fd, kFencingXattr, buf, sizeof(buf));
  if (n < 0) {
    // ENOTSUP: a file system without trusted xattrs never stored one.
    if (errno == ENODATA || errno == ENOTSUP) {
      *token = 0;
      return 0;
    }
    // ERANGE: longer than any value we write.
    return errno == ERANGE ? EIO : errno;
  }
  if (static_cast<size_t>(n) != kTokenBytes) return EIO;
  uint64_t t = 0;
  for (size_t i = 0; i < kTokenBytes; i++) t |= uint64_t{buf[i]} << (8 * i);
  *token = t;
  return 0;
}

int StoreToken(int fd, uint64_t token) {
  unsigned char buf[kTokenBytes];
  for (size_t i = 0; i < kTokenBytes; i++) buf[i] = static_cast<unsigned char>(token >> (8 * i));
  return ::fsetxattr(fd, kFencingXattr, buf, sizeof(buf), 0) == 0 ? 0 : errno;
}

}  // namespace

int FencingTable::Admit(uint64_t gfid, uint64_t generation, int fd, uint64_t token,
                        std::unique_lock<std::mutex>* lock) {
  // GFIDs of one shard differ in their low bits (inode numbers).
  Stripe& s = stripes_[gfid % kStripes];
  std::unique_lock<std::mutex> l(s.mu);
  auto it = s.files.find(gfid);
  const bool loaded = it == s.files.end() || it->second.generation != generation;
  if (loaded) {
    // First call on this file since the start (or on a new file that took
    // the inode number of an old one): the attribute is the truth.
    uint64_t stored = 0;
    if (int err = LoadToken(fd, &stored); err != 0) return err;
    // Dropping cached entries loses nothing: each is a copy of an attribute.
    if (it == s.files.end() && s.files.size() >= kMaxFilesPerStripe) s.files.clear();
    // Calls under the stored token may have come before: their changes
    // are not known.
    it = s.files.insert_or_assign(gfid, Known{.generation = generation, .highest = stored}).first;
  }
  Known& known = it->second;
  // Token 0 is below every token, so a leased file refuses it too.
  if (token < known.highest) return ESTALE;
  if (token > known.highest) {
    // Stored before the call is applied: once the call's change can be
    // seen, no restart can let an older token in.
    if (int err = StoreToken(fd, token); err != 0) return err;
    known.highest = token;
    known.written.Clear();
    // Raised by the first call since the attribute was read: a crash may
    // have lost the attribute naming this token while calls under it had
    // already reached the disk, so what changed under it is not known.
    known.written_known = !loaded;
  }
  *lock = std::move(l);
  return 0;
}

void FencingTable::Changing(uint64_t gfid, uint64_t start, uint64_t end,
                            const std::unique_lock<std::mutex>& lock) {
  Stripe& s = stripes_[gfid % kStripes];
  if (!lock.owns_lock() || lock.mutex() != &s.mu) return;  // not admitted
  auto it = s.files.find(gfid);
  if (it != s.files.end() && it->second.highest != 0) it->second.written.Add(start, end);
}

bool FencingTable::Written(uint64_t gfid, uint64_t token, std::vector<ExtentSet::Range>* ranges,
                           const std::unique_lock<std::mutex>& lock) {
  Stripe& s = stripes_[gfid % kStripes];
  if (!lock.owns_lock() || lock.mutex() != &s.mu) return false;
  auto it = s.files.find(gfid);
  if (it == s.files.end() || it->second.highest != token || !it->second.written_known) {
    return false;
  }
  *ranges = it->second.written.ranges();
  return true;
}

}  // namespace dfuse::storage
