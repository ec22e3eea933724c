#include "workloads/consistency/history.h"

#include <istream>
#include <ostream>
#include <stdexcept>

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
    op.process = j.at("process").get<uint32_t>();
    op.node = j.value("node", 0u);
    op.file = j.at("file").get<uint32_t>();
    op.block = j.at("block").get<uint32_t>();
    op.value = j.at("value").get<uint64_t>();
    op.torn = j.value("torn", false);
    op.ok = j.value("ok", true);
    op.invoke_ns = j.at("invoke_ns").get<int64_t>();
    op.return_ns = j.at("return_ns").get<int64_t>();
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
