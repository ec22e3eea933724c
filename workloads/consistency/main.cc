// dfuse-checker: runs a read/write workload on several mounts of one file
// system and checks that the history it recorded is linearizable
// (ARCHITECTURE.md section 9), or checks a history recorded earlier.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "workloads/consistency/checker.h"
#include "workloads/consistency/workload.h"

namespace dfuse::checker {
namespace {

constexpr int kExitPass = 0;
constexpr int kExitViolations = 1;
constexpr int kExitError = 2;
constexpr int kExitUnknown = 3;

void AddCheckOptions(CLI::App* cmd, CheckOptions* o, std::string* report_path) {
  cmd->add_option("--report", *report_path, "Write the JSON report to this file");
  cmd->add_option("--step-budget", o->step_budget,
                  "Search steps allowed per register before it is reported as unknown")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-reported", o->max_reported,
                  "Violating registers whose minimal history is reported (all are counted)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Checker threads (0: one per core)")
      ->capture_default_str();
}

void WriteJsonFile(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << '\n';
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

// Prints a summary and the first minimal violation; returns the exit status.
int Conclude(const Report& report, nlohmann::json json, const std::string& report_path) {
  if (!report_path.empty()) WriteJsonFile(report_path, json);
  printf(
      "%zu operations (%zu reads, %zu writes, %zu failed) on %zu registers: "
      "%zu violating (%zu not linearizable), %zu unknown, %zu torn reads; checked in %.2f s\n",
      report.operations, report.reads, report.writes, report.failed, report.registers,
      report.violations, report.non_linearizable, report.unknown, report.torn_reads,
      report.seconds);
  if (!report.violating.empty()) {
    const Violation& v = report.violating.front();
    printf("first violation, file %u block %u (minimal history):\n", v.file, v.block);
    for (const Op& op : v.history) printf("  %s\n", OpToJson(op).dump().c_str());
  }
  if (report.violations > 0) return kExitViolations;
  return report.unknown > 0 ? kExitUnknown : kExitPass;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "Linearizability checker for file reads and writes across client nodes.\n"
      "Exit status: 0 linearizable, 1 violations found, 2 usage or I/O error,\n"
      "3 no violation found but some register could not be decided (unknown)."};
  app.require_subcommand(1);

  RunOptions run;
  CheckOptions check;
  std::string history_path, report_path;
  bool have_seed = false;

  CLI::App* run_cmd = app.add_subcommand("run", "Run the workload on the mounts, then check it");
  run_cmd->add_option("--mount", run.mounts, "A client node's mount point (repeat per node)")
      ->required();
  run_cmd->add_option("--procs", run.procs, "Worker processes per mount")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  run_cmd->add_option("--ops", run.ops, "Operations in total")->capture_default_str();
  run_cmd->add_option("--files", run.files, "Shared files")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  run_cmd->add_option("--blocks", run.blocks, "Blocks per file")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 24));
  run_cmd->add_option("--block-size", run.block_size, "Bytes per block (a multiple of 8)")
      ->capture_default_str()
      ->check(CLI::Range(8u, 1u << 24));
  run_cmd->add_option("--write-ratio", run.write_ratio, "Fraction of operations that write")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  run_cmd->add_option("--seed", run.seed, "Random seed (default: random, printed)");
  run_cmd
      ->add_option("--duration-limit", run.duration_limit,
                   "Stop the workers after this many seconds (0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--history", history_path, "Write the history (JSON Lines) to this file");
  run_cmd->add_flag("!--no-progress", run.progress, "Do not print progress on stderr");
  AddCheckOptions(run_cmd, &check, &report_path);

  CLI::App* check_cmd = app.add_subcommand("check", "Check a recorded history");
  check_cmd->add_option("--history", history_path, "History file (JSON Lines)")
      ->required()
      ->check(CLI::ExistingFile);
  AddCheckOptions(check_cmd, &check, &report_path);

  try {
    app.parse(argc, argv);
    have_seed = run_cmd->count("--seed") > 0;
    if (*run_cmd && run.block_size % 8 != 0) {
      throw CLI::ValidationError("--block-size", "must be a multiple of 8");
    }
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitError;
  }

  try {
    if (*run_cmd) {
      if (!have_seed)
        run.seed = std::random_device{}() * (uint64_t{1} << 32) ^ std::random_device{}();
      fprintf(stderr, "dfuse-checker: seed %llu\n", static_cast<unsigned long long>(run.seed));
      RunResult result = RunWorkload(run);
      if (result.stopped_early) {
        fprintf(stderr, "dfuse-checker: duration limit reached after %zu operations\n",
                result.history.size());
      }
      if (!history_path.empty()) {
        std::ofstream out(history_path);
        WriteHistory(out, result.history);
        if (!out.flush()) throw std::runtime_error("cannot write " + history_path);
      }
      const Report report = CheckHistory(result.history, check);
      nlohmann::json json = ReportToJson(report);
      json["seed"] = run.seed;
      json["mounts"] = run.mounts;
      json["run_seconds"] = result.seconds;
      json["stopped_early"] = result.stopped_early;
      return Conclude(report, std::move(json), report_path);
    }
    std::ifstream in(history_path);
    if (!in) throw std::runtime_error("cannot open " + history_path);
    const Report report = CheckHistory(ReadHistory(in), check);
    return Conclude(report, ReportToJson(report), report_path);
  } catch (const std::exception& e) {
    fprintf(stderr, "dfuse-checker: %s\n", e.what());
    return kExitError;
  }
}

}  // namespace
}  // namespace dfuse::checker

int main(int argc, char** argv) { return dfuse::checker::Main(argc, argv); }
