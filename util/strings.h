// Small string helpers shared by the command lines.
#ifndef DFUSE_UTIL_STRINGS_H_
#define DFUSE_UTIL_STRINGS_H_

#include <string>
#include <vector>

namespace dfuse {

// The non-empty pieces of `s` between `sep`s ("a,,b" -> {"a", "b"}).
inline std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace dfuse

#endif  // DFUSE_UTIL_STRINGS_H_
