#include "util/caller.h"

#include <charconv>

namespace dfuse {
namespace {

// Parses one decimal id and the separator after it (or the end).
bool ParseId(std::string_view* text, char sep, uint32_t* id) {
  const char* end = text->data() + text->size();
  const auto [next, ec] = std::from_chars(text->data(), end, *id);
  if (ec != std::errc() || next == text->data()) return false;
  if (next == end) {
    text->remove_prefix(text->size());
    return true;
  }
  if (*next != sep) return false;
  text->remove_prefix(static_cast<size_t>(next - text->data()) + 1);
  return !text->empty();  // a separator is followed by more
}

}  // namespace

std::string EncodeCaller(const Caller& caller) {
  std::string out = std::to_string(caller.uid) + ":" + std::to_string(caller.gid);
  for (size_t i = 0; i < caller.groups.size(); i++) {
    out += (i == 0 ? ':' : ',');
    out += std::to_string(caller.groups[i]);
  }
  return out;
}

bool DecodeCaller(std::string_view text, Caller* caller) {
  Caller parsed;
  if (!ParseId(&text, ':', &parsed.uid) || text.empty()) return false;
  if (!ParseId(&text, ':', &parsed.gid)) return false;
  while (!text.empty()) {
    if (parsed.groups.size() == kMaxCallerGroups) return false;
    uint32_t group;
    if (!ParseId(&text, ',', &group)) return false;
    parsed.groups.push_back(group);
  }
  *caller = std::move(parsed);
  return true;
}

}  // namespace dfuse
