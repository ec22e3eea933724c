#include "storage/access.h"

namespace dfuse::storage {
namespace {

bool ParseAccess(const std::string& text, Access* access) {
  if (text == "rw") {
    *access = Access::kReadWrite;
  } else if (text == "ro") {
    *access = Access::kReadOnly;
  } else if (text == "none") {
    *access = Access::kNone;
  } else {
    return false;
  }
  return true;
}

}  // namespace

bool AccessRules::Parse(const std::vector<std::string>& rules, const std::string& default_access,
                        AccessRules* out, std::string* error) {
  AccessRules parsed;
  if (!ParseAccess(default_access, &parsed.default_)) {
    *error = "default access '" + default_access + "' is not rw, ro or none";
    return false;
  }
  for (const std::string& rule : rules) {
    const size_t eq = rule.find('=');
    Access access;
    if (eq == 0 || eq == std::string::npos || !ParseAccess(rule.substr(eq + 1), &access)) {
      *error = "access rule '" + rule + "' is not NAME=rw, NAME=ro or NAME=none";
      return false;
    }
    if (!parsed.by_name_.emplace(rule.substr(0, eq), access).second) {
      *error = "access rule '" + rule + "' names a client a second time";
      return false;
    }
  }
  *out = std::move(parsed);
  return true;
}

Access AccessRules::For(const std::string& identity) const {
  if (identity.empty()) return default_;
  auto it = by_name_.find(identity);
  return it == by_name_.end() ? default_ : it->second;
}

}  // namespace dfuse::storage
