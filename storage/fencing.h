// Fencing: which data-changing calls (Write, SetAttr with a size, Fallocate)
// a file accepts, judged by the fencing token each call carries.
//
// The rule, per file:
//  * A token > 0 is admitted if it is at least the highest token the file
//    has seen, and then becomes the highest; a lower one is refused with
//    ESTALE. A writer whose lease was revoked or expired holds an older
//    token than the current holder, so its late writes are refused instead
//    of overwriting newer data.
//  * Token 0 ("no lease") is admitted only while the file has never been
//    changed under a token > 0. Once it has, the file is "leased" and token
//    0 is refused with ESTALE as well: there is no way around fencing.
//    Files no strongly consistent client ever wrote keep taking untokened
//    calls, which is what weakwriteback, and writethrough without a lease
//    manager, send.
//
// Persistence: a file's highest token lives with the file itself, in the
// extended attribute kFencingXattr of the backing file (so hard links share
// it and a restart of the service keeps it). It is written only when the
// highest token grows, before the call that raised it is applied, and read
// the first time the file is admitted after a start; the table in memory is
// only a bounded cache of it. The attribute is as durable as the file's
// metadata: an fsync of the file covers it. The xattr RPCs never show or
// change it.
//
// Changes under the highest token: the table also keeps, in memory only,
// which bytes the calls admitted under a file's highest token changed
// (Changing), for the hand-off of that token's lease (Written): the next
// holders keep the pages they cached and drop only those bytes. They are
// known only if this process admitted every call under the token and the
// token was raised after the attribute was read: a restart, or a file
// dropped from the cache and read again, forgets them ("unknown": the next
// holders drop everything), and so does a token raised by the first call
// after that (the attribute is written without a sync, so a crash may lose
// it while calls under its token reached the disk).
#ifndef DFUSE_STORAGE_FENCING_H_
#define DFUSE_STORAGE_FENCING_H_

#include <array>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "util/extent_set.h"

namespace dfuse::storage {

// The backing file's attribute holding its highest token: 8 bytes, little
// endian. In `trusted.` so that only the (root) service can touch it
// locally.
inline constexpr char kFencingXattr[] = "trusted.dfuse.fence";

class FencingTable {
 public:
  // Admits a data-changing call on regular file `gfid` carrying `token`.
  // `generation` tells the file apart from an earlier one that had the same
  // inode number (hence GFID); `fd` is a descriptor of the file open for
  // writing, used to read and write kFencingXattr.
  //
  // Returns 0 with `*lock` held: the caller keeps it until its change is
  // done, so an admitted call cannot land after a later call that raised
  // the token (or made the file leased). Returns ESTALE if the rule above
  // refuses the call; EIO if the stored token is malformed; or the errno of
  // reading or writing the attribute (e.g. ENOSPC, or ENOTSUP on a file
  // system without trusted xattrs): a token that was not stored would fence
  // nothing after a restart, so the call is refused rather than applied.
  int Admit(uint64_t gfid, uint64_t generation, int fd, uint64_t token,
            std::unique_lock<std::mutex>* lock);

  // With the lock Admit gave for `gfid` held: the admitted call changes
  // bytes [start, end) (ExtentSet::kToEnd: to the end of the file). Called
  // before the change is applied; a call that then fails has changed at
  // most that.
  void Changing(uint64_t gfid, uint64_t start, uint64_t end,
                const std::unique_lock<std::mutex>& lock);

  // With the lock Admit gave for `gfid` held: every byte range changed
  // under `token` so far, if `token` is the file's highest and all of them
  // are known; false otherwise.
  bool Written(uint64_t gfid, uint64_t token, std::vector<ExtentSet::Range>* ranges,
               const std::unique_lock<std::mutex>& lock);

  // Ranges kept per file; past it neighbours merge (util/extent_set.h).
  static constexpr size_t kMaxWrittenRanges = 32;

 private:
  struct Known {
    uint64_t generation;
    uint64_t highest;  // 0: never changed under a token
    // What calls under `highest` changed, if known (see above).
    ExtentSet written{kMaxWrittenRanges};
    bool written_known = false;
  };
  // Striped so that calls on different files rarely contend.
  struct Stripe {
    std::mutex mu;
    std::unordered_map<uint64_t, Known> files;  // by GFID
  };
  static constexpr size_t kStripes = 64;
  // Files cached per stripe. Past it the stripe's cache is dropped and
  // refilled from the attributes (forgetting the changes kept with them):
  // about 100 B per file, 100 MiB at most, more for files with many ranges.
  static constexpr size_t kMaxFilesPerStripe = 16384;

  std::array<Stripe, kStripes> stripes_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_FENCING_H_
