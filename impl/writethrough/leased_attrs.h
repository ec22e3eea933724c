// Attributes of regular files held under a userspace lease (writethrough).
//
// While this node holds a lease on a file no other node can change it, so a
// GETATTR under the lease, which the kernel sends before every read(2) it
// would serve from its cache (see lease_gate.h), can be answered from here
// instead of a storage round trip. An entry is good for one lease epoch of
// its file: every revoke starts a new epoch (LeaseGate::Access::epoch), so
// what was cached before a revoke is never served after it.
//
// The size must stay exact although this node's buffered writes reach
// storage later, behind the entry's back. So an entry is made only from a
// storage reply that already counts every byte this node wrote (Put refuses
// when a write came in meanwhile), and every later write here grows it
// (Grow). This node's own attribute changes (truncate, chmod, fallocate,
// open with O_TRUNC) drop the entry; the next GETATTR fetches it again. A
// node that changes a file's link count (link, unlink, a rename replacing
// it) takes the file's WRITE lease before it replies, which ends every
// other node's epoch (UserspaceLeases::LinkCountChanged). mtime is the
// one from the fetch: this node's later writes do not move it until the
// lease ends, which is also what keeps the kernel's pages (auto_inval_data
// drops them on an mtime change).
#ifndef DFUSE_IMPL_WRITETHROUGH_LEASED_ATTRS_H_
#define DFUSE_IMPL_WRITETHROUGH_LEASED_ATTRS_H_

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "proto/storage.pb.h"

namespace dfuse {

class LeasedAttrs {
 public:
  // The attributes cached for gfid in `epoch`, if any.
  bool Get(uint64_t gfid, uint64_t epoch, proto::Attr* attr) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(gfid);
    if (it == entries_.end() || it->second.epoch != epoch) {
      return false;
    }
    *attr = it->second.attr;
    return true;
  }

  // How many writes this node has made to gfid; read before asking storage.
  uint64_t Writes(uint64_t gfid) const {
    std::lock_guard<std::mutex> l(mu_);
    return WritesLocked(gfid);
  }

  // Caches `attr`, fetched from storage after Writes() returned
  // `writes_before`, unless a write came in since (its bytes may be missing
  // from attr.size() and may reach storage unseen).
  void Put(uint64_t gfid, uint64_t epoch, const proto::Attr& attr, uint64_t writes_before) {
    std::lock_guard<std::mutex> l(mu_);
    if (WritesLocked(gfid) != writes_before) return;
    entries_[gfid] = Entry{epoch, attr};
  }

  // This node wrote up to `end`: the file is at least that long.
  void Grow(uint64_t gfid, uint64_t end) {
    std::lock_guard<std::mutex> l(mu_);
    writes_[gfid]++;
    auto it = entries_.find(gfid);
    if (it != entries_.end() && it->second.attr.size() < end) it->second.attr.set_size(end);
  }

  void Forget(uint64_t gfid) {
    std::lock_guard<std::mutex> l(mu_);
    entries_.erase(gfid);
  }

  // The file is gone from this node's inode table.
  void Drop(uint64_t gfid) {
    std::lock_guard<std::mutex> l(mu_);
    entries_.erase(gfid);
    writes_.erase(gfid);
  }

 private:
  uint64_t WritesLocked(uint64_t gfid) const {
    auto it = writes_.find(gfid);
    return it == writes_.end() ? 0 : it->second;
  }

  struct Entry {
    uint64_t epoch;
    proto::Attr attr;
  };
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::unordered_map<uint64_t, uint64_t> writes_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_WRITETHROUGH_LEASED_ATTRS_H_
