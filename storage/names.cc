#include "storage/names.h"

#include <cerrno>
#include <climits>

namespace dfuse::storage {

int ValidateName(std::string_view name) {
  if (name.empty()) return EINVAL;
  if (name.size() > NAME_MAX) return ENAMETOOLONG;
  if (name == "." || name == "..") return EINVAL;
  if (name.find('/') != std::string_view::npos) return EINVAL;
  if (name.find('\0') != std::string_view::npos) return EINVAL;
  return 0;
}

int ValidateSymlinkTarget(std::string_view target) {
  if (target.empty()) return ENOENT;
  if (target.size() >= PATH_MAX) return ENAMETOOLONG;
  if (target.find('\0') != std::string_view::npos) return EINVAL;
  return 0;
}

}  // namespace dfuse::storage
