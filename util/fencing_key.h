// Proof that a fencing token came from a lease manager, for the client it
// was granted to (README, "Security").
//
// A fencing token orders a file's writers, so a client that made one up (a
// higher one) would fence every genuine writer out of the file. With a key
// shared by the lease managers and the storage service, each WRITE grant
// carries a proof: HMAC-SHA256 over the file's GFID, the token and the
// holder's identity (its certificate's common name), cut to 16 bytes. The
// storage service admits a tokened change only with the proof that matches
// the caller's own identity, so a token can be neither invented nor used by
// another client. The proof depends on nothing else, so it stays valid when
// a new manager takes the lease over (reclaim) and after a storage restart.
#ifndef DFUSE_UTIL_FENCING_KEY_H_
#define DFUSE_UTIL_FENCING_KEY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace dfuse {

class FencingKey {
 public:
  static constexpr size_t kMinSecretBytes = 32;
  static constexpr size_t kProofBytes = 16;

  // Reads the secret from `path` (at least kMinSecretBytes bytes; tools/
  // dfuse-certs fencing-key makes one). Null with a one-line *error if it
  // cannot be read, is too short, or others may read it.
  static std::unique_ptr<FencingKey> Load(const std::string& path, std::string* error);

  explicit FencingKey(std::string secret) : secret_(std::move(secret)) {}

  // The proof for `token` on `gfid`, held by `holder`.
  std::string Prove(uint64_t gfid, uint64_t token, std::string_view holder) const;
  // Whether `proof` is Prove(gfid, token, holder), compared in constant time.
  bool Verify(uint64_t gfid, uint64_t token, std::string_view holder, std::string_view proof) const;

  // Storage's proof of `handoff` (a serialized Handoff: the attributes a
  // durable write under `token` left gfid with, and the bytes written under
  // it). The lease manager passes a WRITE holder's hand-off to the file's
  // next holders only with it, so that a client cannot make the others
  // believe what storage never said. It says nothing of freshness: a client
  // that breaks the protocol could hand over an earlier hand-off of its own
  // token (an fsync's) and hide what it wrote after (README, Known
  // limitations).
  std::string ProveHandoff(uint64_t gfid, uint64_t token, std::string_view handoff) const;
  bool VerifyHandoff(uint64_t gfid, uint64_t token, std::string_view handoff,
                     std::string_view proof) const;

 private:
  const std::string secret_;
};

}  // namespace dfuse

#endif  // DFUSE_UTIL_FENCING_KEY_H_
