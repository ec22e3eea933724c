#include "workloads/consistency/checker.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

namespace dfuse::checker {

Report CheckHistory(const std::vector<Op>& ops, const CheckOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Report report;
  std::map<std::pair<uint32_t, uint32_t>, std::vector<Op>> by_register;
  for (const Op& op : ops) {
    ++report.operations;
    ++(op.is_write() ? report.writes : report.reads);
    if (!op.ok) ++report.failed;
    by_register[{op.file, op.block}].push_back(op);
  }
  report.registers = by_register.size();

  std::vector<std::pair<std::pair<uint32_t, uint32_t>, std::vector<Op>>> registers(
      std::make_move_iterator(by_register.begin()), std::make_move_iterator(by_register.end()));
  std::vector<RegisterResult> results(registers.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < registers.size();) {
      results[i] = CheckRegister(registers[i].second, options.step_budget);
    }
  };
  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  threads = std::clamp<unsigned>(threads, 1, std::max<size_t>(registers.size(), 1));
  std::vector<std::jthread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();

  for (size_t i = 0; i < registers.size(); ++i) {
    const auto [file, block] = registers[i].first;
    const RegisterResult& r = results[i];
    RegisterSummary s{.file = file,
                      .block = block,
                      .torn_reads = r.torn_reads,
                      .local_torn_reads = r.local_torn_reads,
                      .verdict = r.verdict,
                      .linearizable = r.linearizable,
                      .steps = r.steps};
    for (const Op& op : registers[i].second) ++(op.is_write() ? s.writes : s.reads);
    report.per_register.push_back(s);
    report.torn_reads += r.torn_reads;
    report.local_torn_reads += r.local_torn_reads;
    if (r.verdict == Verdict::kUnknown) ++report.unknown;
    if (r.linearizable == Verdict::kViolation) ++report.non_linearizable;
    if (r.verdict != Verdict::kViolation) continue;
    if (report.violations++ < options.max_reported) {
      Violation v{file, block, r.witness};
      std::stable_sort(v.history.begin(), v.history.end(),
                       [](const Op& a, const Op& b) { return a.invoke_ns < b.invoke_ns; });
      report.violating.push_back(std::move(v));
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

nlohmann::json ReportToJson(const Report& report) {
  nlohmann::json per_register = nlohmann::json::array();
  for (const RegisterSummary& s : report.per_register) {
    per_register.push_back({{"file", s.file},
                            {"block", s.block},
                            {"reads", s.reads},
                            {"writes", s.writes},
                            {"torn_reads", s.torn_reads},
                            {"local_torn_reads", s.local_torn_reads},
                            {"result", VerdictName(s.verdict)},
                            {"linearizable", VerdictName(s.linearizable)},
                            {"steps", s.steps}});
  }
  nlohmann::json violating = nlohmann::json::array();
  for (const Violation& v : report.violating) {
    nlohmann::json history = nlohmann::json::array();
    for (const Op& op : v.history) history.push_back(OpToJson(op));
    violating.push_back({{"file", v.file}, {"block", v.block}, {"history", history}});
  }
  return {{"operations", report.operations},
          {"reads", report.reads},
          {"writes", report.writes},
          {"failed", report.failed},
          {"registers", report.registers},
          {"violations", report.violations},
          {"non_linearizable", report.non_linearizable},
          {"unknown", report.unknown},
          {"torn_reads", report.torn_reads},
          {"local_torn_reads", report.local_torn_reads},
          {"per_register", per_register},
          {"violating", violating},
          {"seconds", report.seconds}};
}

}  // namespace dfuse::checker
