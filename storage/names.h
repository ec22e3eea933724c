// Validation of the names and symlink targets clients send.
#ifndef DFUSE_STORAGE_NAMES_H_
#define DFUSE_STORAGE_NAMES_H_

#include <string_view>

namespace dfuse::storage {

// Returns 0 if `name` is a single path component the server may pass to an
// *at() call relative to a directory it exported: non-empty, at most
// NAME_MAX bytes, no '/' or NUL, and neither "." nor "..". Otherwise the
// errno for it: ENAMETOOLONG for a long name, as Linux gives, and EINVAL for
// the rest (an empty name is malformed input, not a name that is missing).
int ValidateName(std::string_view name);

// Returns 0 if `target` can be stored in a symlink: non-empty (ENOENT), no
// NUL byte (EINVAL), shorter than PATH_MAX (ENAMETOOLONG). The server never
// resolves a target, so any other content is allowed.
int ValidateSymlinkTarget(std::string_view target);

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_NAMES_H_
