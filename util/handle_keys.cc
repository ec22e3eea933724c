#include "util/handle_keys.h"

#include <charconv>

#include "util/strings.h"

namespace dfuse {

std::string EncodeHandleKeys(const std::vector<std::pair<uint64_t, uint64_t>>& keys) {
  std::string out;
  char buf[17];
  for (const auto& [gfid, key] : keys) {
    if (!out.empty()) out.push_back(',');
    out.append(buf, std::to_chars(buf, buf + sizeof(buf), gfid, 16).ptr);
    out.push_back(':');
    out.append(buf, std::to_chars(buf, buf + sizeof(buf), key, 16).ptr);
  }
  return out;
}

bool FindHandleKey(std::string_view text, uint64_t gfid, uint64_t* key) {
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const size_t colon = item.find(':');
    uint64_t g;
    if (colon == std::string_view::npos || !ParseNumber(item.substr(0, colon), &g, 16)) return false;
    if (g == gfid) return ParseNumber(item.substr(colon + 1), key, 16);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace dfuse
