// Which clients may use the export, and as whom, by the common name of
// their certificate (util/tls.h), as NFS's exports(5) lists its clients:
// read-write, read-only or not at all; root squashed to an anonymous user
// (the default), every user squashed, or no squashing; and the user and
// group ids a client may act as. Clients in plain text have no name and
// get the default rule.
#ifndef DFUSE_STORAGE_ACCESS_H_
#define DFUSE_STORAGE_ACCESS_H_

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "util/caller.h"

namespace dfuse::storage {

enum class Access { kNone, kReadOnly, kReadWrite };
enum class Squash { kNone, kRoot, kAll };

// Ids from `first` to `last`, both included.
struct IdRange {
  uint32_t first = 0;
  uint32_t last = UINT32_MAX;
  bool Contains(uint32_t id) const { return id >= first && id <= last; }
};

// One client's rule: options "rw|ro|none", "root_squash|no_root_squash|
// all_squash", "anonuid=N", "anongid=N", "uids=A-B", "gids=A-B",
// comma-separated, each defaulting as in exports(5) (rw, root_squash,
// anonymous 65534:65534, any id).
struct ExportRule {
  Access access = Access::kReadWrite;
  Squash squash = Squash::kRoot;
  uint32_t anon_uid = 65534;
  uint32_t anon_gid = 65534;
  IdRange uids, gids;

  // Parses a comma-separated option list over the defaults above. On
  // failure returns false and sets *error to a one-line reason.
  static bool Parse(const std::string& options, ExportRule* out, std::string* error);
  // Every client read-write as whoever it says (no squashing, any id): the
  // rule of a library user's in-process server, not the daemon's default.
  static ExportRule Trusting();

  // The user `claimed` is mapped to: squashed to the anonymous user where
  // the rule says so; groups outside `gids` dropped. EPERM if the mapped
  // user or primary group is outside the allowed ids, else 0.
  int Map(const Caller& claimed, Caller* mapped) const;
  // Whether this client's root acts as the anonymous user.
  bool SquashesRoot() const { return squash != Squash::kNone; }
};

class AccessRules {
 public:
  // Every client read-write, no squashing (ExportRule::Trusting).
  AccessRules();

  // Parses "NAME=OPTIONS" rules and the default OPTIONS for clients no
  // rule names (see ExportRule). On failure returns false and sets *error
  // to a one-line reason.
  static bool Parse(const std::vector<std::string>& rules, const std::string& default_rule,
                    AccessRules* out, std::string* error);

  const ExportRule& For(const std::string& identity) const;

 private:
  ExportRule default_;
  std::unordered_map<std::string, ExportRule> by_name_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_ACCESS_H_
