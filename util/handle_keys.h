// The wire form of GFID handle keys (storage/handle_secret.h): every
// storage call names, in its metadata, the key the storage service issued
// for each GFID the call uses.
#ifndef DFUSE_UTIL_HANDLE_KEYS_H_
#define DFUSE_UTIL_HANDLE_KEYS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dfuse {

inline constexpr char kHandleKeysKey[] = "dfuse-handles";

// "GFID:KEY[,GFID:KEY...]", both in hex.
std::string EncodeHandleKeys(const std::vector<std::pair<uint64_t, uint64_t>>& keys);
// The key `text` names for `gfid`; false if it names none or is malformed.
bool FindHandleKey(std::string_view text, uint64_t gfid, uint64_t* key);

}  // namespace dfuse

#endif  // DFUSE_UTIL_HANDLE_KEYS_H_
