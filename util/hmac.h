// HMAC-SHA256 (OpenSSL), for the proofs and keys only the holders of a
// secret can make (util/fencing_key.h, storage/handle_secret.h).
#ifndef DFUSE_UTIL_HMAC_H_
#define DFUSE_UTIL_HMAC_H_

#include <string>
#include <string_view>

namespace dfuse {

// The 32-byte HMAC-SHA256 of `message` under `key`.
std::string HmacSha256(std::string_view key, std::string_view message);

// Whether a and b are equal, in time that does not depend on where they differ.
bool SameSecret(std::string_view a, std::string_view b);

}  // namespace dfuse

#endif  // DFUSE_UTIL_HMAC_H_
