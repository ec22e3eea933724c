// Who a storage call acts for: the user on the client node whose request
// it carries, as AUTH_SYS credentials do for NFS. The client daemon sends it
// with every call (gRPC metadata kCallerKey); the storage service maps it
// by the client's export rule (root squash, allowed ids) and checks the
// call's permissions as the mapped user (storage/permission.h).
#ifndef DFUSE_UTIL_CALLER_H_
#define DFUSE_UTIL_CALLER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dfuse {

struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups

  bool operator==(const Caller& o) const {
    return uid == o.uid && gid == o.gid && groups == o.groups;
  }
};

// The metadata key of a call's caller.
inline constexpr char kCallerKey[] = "dfuse-caller";
// At most this many supplementary groups are carried (Linux allows 65536;
// NFS's AUTH_SYS carries 16).
inline constexpr size_t kMaxCallerGroups = 256;

// "UID:GID" or "UID:GID:G1,G2,...", decimal.
std::string EncodeCaller(const Caller& caller);
// Parses EncodeCaller's form: false for anything else, or more than
// kMaxCallerGroups groups.
bool DecodeCaller(std::string_view text, Caller* caller);

}  // namespace dfuse

#endif  // DFUSE_UTIL_CALLER_H_
