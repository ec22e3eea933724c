#include "storage/access.h"

#include <algorithm>
#include <cerrno>

#include "util/strings.h"

namespace dfuse::storage {
namespace {

bool ParseRange(const std::string& text, IdRange* range) {
  const size_t dash = text.find('-');
  if (dash == std::string::npos) return false;
  IdRange parsed;
  if (!ParseNumber(text.substr(0, dash), &parsed.first) ||
      !ParseNumber(text.substr(dash + 1), &parsed.last) || parsed.first > parsed.last) {
    return false;
  }
  *range = parsed;
  return true;
}

bool ParseOption(const std::string& option, ExportRule* rule) {
  if (option == "rw") {
    rule->access = Access::kReadWrite;
  } else if (option == "ro") {
    rule->access = Access::kReadOnly;
  } else if (option == "none") {
    rule->access = Access::kNone;
  } else if (option == "root_squash") {
    rule->squash = Squash::kRoot;
  } else if (option == "no_root_squash") {
    rule->squash = Squash::kNone;
  } else if (option == "all_squash") {
    rule->squash = Squash::kAll;
  } else if (option.rfind("anonuid=", 0) == 0) {
    return ParseNumber(option.substr(8), &rule->anon_uid);
  } else if (option.rfind("anongid=", 0) == 0) {
    return ParseNumber(option.substr(8), &rule->anon_gid);
  } else if (option.rfind("uids=", 0) == 0) {
    return ParseRange(option.substr(5), &rule->uids);
  } else if (option.rfind("gids=", 0) == 0) {
    return ParseRange(option.substr(5), &rule->gids);
  } else {
    return false;
  }
  return true;
}

}  // namespace

bool ExportRule::Parse(const std::string& options, ExportRule* out, std::string* error) {
  ExportRule parsed;
  for (const std::string& option : Split(options, ',')) {
    if (!ParseOption(option, &parsed)) {
      *error = "export option '" + option +
               "' is not rw, ro, none, root_squash, no_root_squash, all_squash, anonuid=N, "
               "anongid=N, uids=A-B or gids=A-B";
      return false;
    }
  }
  *out = parsed;
  return true;
}

ExportRule ExportRule::Trusting() {
  ExportRule rule;
  rule.squash = Squash::kNone;
  return rule;
}

int ExportRule::Map(const Caller& claimed, Caller* mapped) const {
  *mapped = claimed;
  if (squash == Squash::kAll || (squash == Squash::kRoot && claimed.uid == 0)) {
    mapped->uid = anon_uid;
  }
  if (squash == Squash::kAll || (squash == Squash::kRoot && claimed.gid == 0)) {
    mapped->gid = anon_gid;
  }
  auto& groups = mapped->groups;
  if (squash == Squash::kAll) groups.clear();
  groups.erase(std::remove_if(groups.begin(), groups.end(),
                              [this](uint32_t g) {
                                return (squash == Squash::kRoot && g == 0) || !gids.Contains(g);
                              }),
               groups.end());
  // The anonymous user is always allowed: a squashed client acts as it.
  const bool uid_ok = uids.Contains(mapped->uid) || mapped->uid == anon_uid;
  const bool gid_ok = gids.Contains(mapped->gid) || mapped->gid == anon_gid;
  return uid_ok && gid_ok ? 0 : EPERM;
}

AccessRules::AccessRules() : default_(ExportRule::Trusting()) {}

bool AccessRules::Parse(const std::vector<std::string>& rules, const std::string& default_rule,
                        AccessRules* out, std::string* error) {
  AccessRules parsed;
  if (!ExportRule::Parse(default_rule, &parsed.default_, error)) {
    *error = "default rule: " + *error;
    return false;
  }
  for (const std::string& rule : rules) {
    const size_t eq = rule.find('=');
    ExportRule export_rule;
    if (eq == 0 || eq == std::string::npos) {
      *error =
          "access rule '" + rule + "' is not NAME=OPTIONS (e.g. c01=ro or c01=rw,uids=1000-1999)";
      return false;
    }
    if (!ExportRule::Parse(rule.substr(eq + 1), &export_rule, error)) {
      *error = "access rule '" + rule + "': " + *error;
      return false;
    }
    if (!parsed.by_name_.emplace(rule.substr(0, eq), export_rule).second) {
      *error = "access rule '" + rule + "' names a client a second time";
      return false;
    }
  }
  *out = std::move(parsed);
  return true;
}

const ExportRule& AccessRules::For(const std::string& identity) const {
  if (identity.empty()) return default_;
  auto it = by_name_.find(identity);
  return it == by_name_.end() ? default_ : it->second;
}

}  // namespace dfuse::storage
