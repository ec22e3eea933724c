#include "workloads/consistency/history.h"

#include <istream>
#include <limits>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace dfuse::checker {

nlohmann::json OpToJson(const Op& op) {
  nlohmann::json j = {{"process", op.process},
                      {"node", op.node},
                      {"kind", op.is_write() ? "write" : "read"},
                      {"file", op.file},
                      {"block", op.block},
                      {"value", op.value},
                      {"invoke_ns", op.invoke_ns},
                      {"return_ns", op.return_ns}};
  if (op.torn) j["torn"] = true;
  if (!op.ok) j["ok"] = false;
  return j;
}

namespace {

// The integer at `key` (or `fallback` if it may be left out and is). A
// float, a negative count or a number too large for T is malformed input,
// not a value to convert: nlohmann's get<T>() would convert it with a cast
// that is undefined beyond T's range.
template <typename T>
T Integer(const nlohmann::json& j, const char* key, std::optional<T> fallback = std::nullopt) {
  if (fallback && !j.contains(key)) return *fallback;
  const nlohmann::json& v = j.at(key);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0 || std::numeric_limits<T>::is_signed) return static_cast<T>(i);
  }
  throw std::runtime_error(std::string(key) + " must be an integer within range");
}

}  // namespace

Op OpFromJson(const nlohmann::json& j) {
  if (!j.is_object()) throw std::runtime_error("not a JSON object");
  Op op;
  try {
    const std::string kind = j.at("kind").get<std::string>();
    if (kind == "write") {
      op.kind = OpKind::kWrite;
    } else if (kind != "read") {
      throw std::runtime_error("kind must be \"read\" or \"write\", not \"" + kind + "\"");
    }
    op.process = Integer<uint32_t>(j, "process");
    op.node = Integer<uint32_t>(j, "node", 0u);
    op.file = Integer<uint32_t>(j, "file");
    op.block = Integer<uint32_t>(j, "block");
    op.value = Integer<uint64_t>(j, "value");
    op.torn = j.value("torn", false);
    op.ok = j.value("ok", true);
    op.invoke_ns = Integer<int64_t>(j, "invoke_ns");
    op.return_ns = Integer<int64_t>(j, "return_ns");
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(e.what());
  }
  if (op.return_ns < op.invoke_ns) throw std::runtime_error("return_ns is before invoke_ns");
  return op;
}

void WriteHistory(std::ostream& out, const std::vector<Op>& ops) {
  for (const Op& op : ops) out << OpToJson(op).dump() << '\n';
}

std::vector<Op> ReadHistory(std::istream& in) {
  std::vector<Op> ops;
  std::string line;
  for (size_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      ops.push_back(OpFromJson(nlohmann::json::parse(line)));
    } catch (const std::exception& e) {
      throw std::runtime_error("history line " + std::to_string(lineno) + ": " + e.what());
    }
  }
  return ops;
}

}  // namespace dfuse::checker
