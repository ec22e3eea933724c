// Keys that make a GFID usable only by a client the storage service handed
// it to, as NFS servers put a secret part into their file handles. A GFID
// is a shard id and an inode number, which a client could guess, and then
// name a file in a directory it may not search. So beside each GFID the
// service hands out (Lookup, Create and the others that make a name,
// ReadDir with attributes, GetRoot; Attr.handle_key) it issues a key: a
// MAC of the GFID and its generation under a secret that never leaves the
// service (STATE_DIR/handle.key, made at first start, so keys survive
// restarts). Every call names the keys of the GFIDs it uses
// (util/handle_keys.h); a GFID without its key is stale (ESTALE) to the
// caller. Keys are handed out only with the permission reaching the file
// takes: search on its directory.
#ifndef DFUSE_STORAGE_HANDLE_SECRET_H_
#define DFUSE_STORAGE_HANDLE_SECRET_H_

#include <cstdint>
#include <memory>
#include <string>

namespace dfuse::storage {

class HandleSecret {
 public:
  static constexpr size_t kSecretBytes = 32;

  // Reads STATE_DIR/handle.key, or makes it (random, 0600) if there is
  // none. Null with a one-line *error if it cannot.
  static std::unique_ptr<HandleSecret> OpenOrCreate(const std::string& state_dir,
                                                    std::string* error);

  explicit HandleSecret(std::string secret) : secret_(std::move(secret)) {}

  // The key of `gfid` while it names the file of `generation`; never 0.
  uint64_t KeyOf(uint64_t gfid, uint64_t generation) const;

 private:
  const std::string secret_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_HANDLE_SECRET_H_
