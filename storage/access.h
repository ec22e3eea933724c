// Which clients may use the export, and how: read-write, read-only or not
// at all, by the common name of their certificate (util/tls.h), as an NFS
// export lists its clients. Clients in plain text have no name and get the
// default.
#ifndef DFUSE_STORAGE_ACCESS_H_
#define DFUSE_STORAGE_ACCESS_H_

#include <string>
#include <unordered_map>
#include <vector>

namespace dfuse::storage {

enum class Access { kNone, kReadOnly, kReadWrite };

class AccessRules {
 public:
  // Every client read-write.
  AccessRules() = default;

  // Parses "NAME=rw|ro|none" rules and the default for clients no rule
  // names ("rw", "ro" or "none"). On failure returns false and sets *error
  // to a one-line reason.
  static bool Parse(const std::vector<std::string>& rules, const std::string& default_access,
                    AccessRules* out, std::string* error);

  Access For(const std::string& identity) const;

 private:
  Access default_ = Access::kReadWrite;
  std::unordered_map<std::string, Access> by_name_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_ACCESS_H_
