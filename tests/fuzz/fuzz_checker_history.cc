// Fuzzes the consistency checker with the history files it reads (JSON
// Lines, history.h): parsing, the check itself and the report.
//
// Besides crashes and sanitizer reports, two properties are checked on
// every history that parses:
//  * writing it out and reading it back gives the same operations;
//  * soundness on the histories whose answer is plain: if no two operations
//    overlap in time, nothing failed or tore, and every read returned the
//    latest value written to its block before it (0 if none), the history is
//    linearizable and the checker must say so.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "workloads/consistency/checker.h"
#include "workloads/consistency/history.h"

namespace dfuse::checker {
namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_checker_history: %s\n", what);
  std::abort();
}

bool SameOps(const std::vector<Op>& a, const std::vector<Op>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Op& x, const Op& y) {
    return x.process == y.process && x.node == y.node && x.kind == y.kind && x.file == y.file &&
           x.block == y.block && x.value == y.value && x.torn == y.torn && x.ok == y.ok &&
           x.invoke_ns == y.invoke_ns && x.return_ns == y.return_ns;
  });
}

// True if the history is sequential and every read saw the latest write.
bool PlainlyLinearizable(std::vector<Op> ops) {
  std::sort(ops.begin(), ops.end(),
            [](const Op& a, const Op& b) { return a.invoke_ns < b.invoke_ns; });
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> value;  // (file, block)
  for (size_t i = 0; i < ops.size(); i++) {
    const Op& op = ops[i];
    if (!op.ok || op.torn) return false;
    if (i > 0 && ops[i - 1].return_ns >= op.invoke_ns) return false;  // overlap
    uint64_t& v = value[{op.file, op.block}];
    if (op.is_write()) {
      v = op.value;
    } else if (op.value != v) {
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace dfuse::checker

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dfuse::checker;
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::vector<Op> ops;
  try {
    ops = ReadHistory(in);
  } catch (const std::runtime_error&) {
    return 0;  // malformed: refused with a reason, as it must be
  }
  if (ops.size() > 64) return 0;  // the search is exponential in overlaps

  std::ostringstream out;
  WriteHistory(out, ops);
  std::istringstream back(out.str());
  if (!SameOps(ReadHistory(back), ops)) Fail("a history does not read back as written");

  CheckOptions options;
  options.step_budget = 100'000;
  options.threads = 1;
  const Report report = CheckHistory(ops, options);
  ReportToJson(report).dump();
  if (PlainlyLinearizable(ops) && (report.violations != 0 || report.unknown != 0)) {
    Fail("a sequential history where every read saw the latest write was not linearizable");
  }
  return 0;
}
