// Small string helpers shared by the command lines and wire formats.
#ifndef DFUSE_UTIL_STRINGS_H_
#define DFUSE_UTIL_STRINGS_H_

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>
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

// Parses all of `text` as an unsigned number in `base`: false if it is
// empty, holds anything else, or does not fit in T.
template <typename T>
bool ParseNumber(std::string_view text, T* value, int base = 10) {
  const char* end = text.data() + text.size();
  const auto [next, ec] = std::from_chars(text.data(), end, *value, base);
  return ec == std::errc() && next == end && !text.empty();
}

}  // namespace dfuse

#endif  // DFUSE_UTIL_STRINGS_H_
