// dfuse-checker: runs a read/write workload on several mounts of one file
// system and checks that the history it recorded is linearizable
// (ARCHITECTURE.md section 9), or checks histories recorded earlier: one
// host's, or several hosts' merged onto one clock (merge.h).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "workloads/consistency/checker.h"
#include "workloads/consistency/merge.h"
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

// The shared files: the same on every host of a run and in `prepare`.
void AddLayoutOptions(CLI::App* cmd, RunOptions* o) {
  cmd->add_option("--files", o->files, "Shared files")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  cmd->add_option("--blocks", o->blocks, "Blocks per file")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 24));
  cmd->add_option("--block-size", o->block_size, "Bytes per block (a multiple of 8)")
      ->capture_default_str()
      ->check(CLI::Range(8u, 1u << 24));
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
      "%zu violating (%zu not linearizable), %zu unknown, %zu torn reads (%zu overlapped by a "
      "write on the reader's node); checked in %.2f s\n",
      report.operations, report.reads, report.writes, report.failed, report.registers,
      report.violations, report.non_linearizable, report.unknown, report.torn_reads,
      report.local_torn_reads, report.seconds);
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
  std::vector<std::string> history_paths, clock_offsets;
  bool have_seed = false, no_check = false;
  std::string clock = "monotonic";

  CLI::App* run_cmd = app.add_subcommand("run", "Run the workload on the mounts, then check it");
  run_cmd->add_option("--mount", run.mounts, "A client node's mount point (repeat per node)")
      ->required();
  run_cmd->add_option("--procs", run.procs, "Worker processes per mount")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  run_cmd->add_option("--ops", run.ops, "Operations in total")->capture_default_str();
  AddLayoutOptions(run_cmd, &run);
  run_cmd->add_option("--write-ratio", run.write_ratio, "Fraction of operations that write")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  run_cmd->add_option("--seed", run.seed, "Random seed (default: random, printed)");
  run_cmd
      ->add_option("--duration-limit", run.duration_limit,
                   "Stop the workers after this many seconds (0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--history", history_path,
                      "Write the history (JSON Lines) to this file ('-': standard output)");
  run_cmd->add_flag("!--no-progress", run.progress, "Do not print progress on stderr");
  // A cluster runs one `run` per host against that host's mount, then merges
  // and checks the histories in one place (`check --clock-offset`).
  run_cmd
      ->add_option("--first-node", run.first_node,
                   "This host's first node number (one run per host, histories merged later)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1u << 16));
  double start_at = 0;
  run_cmd
      ->add_option("--start-at", start_at,
                   "Start the workers at this wall-clock time (seconds since the epoch), so "
                   "runs on several hosts overlap")
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_flag("!--no-create", run.create_files,
                    "Use the shared files another run's 'prepare' made");
  run_cmd
      ->add_option("--clock", clock,
                   "Clock of the history's times: monotonic (one host) or realtime (merged with "
                   "other hosts' histories)")
      ->capture_default_str()
      ->check(CLI::IsMember({"monotonic", "realtime"}));
  CLI::Option* no_check_opt =
      run_cmd->add_flag("--no-check", no_check, "Only record the history (needs --history)");
  AddCheckOptions(run_cmd, &check, &report_path);
  no_check_opt->excludes("--report");

  CLI::App* prepare_cmd = app.add_subcommand(
      "prepare", "Create the shared files for runs on several hosts (each with --no-create)");
  prepare_cmd->add_option("--mount", run.mounts, "The mount point to create them through")
      ->required()
      ->expected(1);
  AddLayoutOptions(prepare_cmd, &run);

  CLI::App* check_cmd = app.add_subcommand("check", "Check recorded histories");
  check_cmd
      ->add_option("--history", history_paths,
                   "History file (JSON Lines); repeat for the histories of several hosts")
      ->required()
      ->check(CLI::ExistingFile);
  check_cmd->add_option("--clock-offset", clock_offsets,
                        "MIN:MAX ns: the matching history's clock minus the reference clock "
                        "(one per --history, in order; none: all on one clock)");
  AddCheckOptions(check_cmd, &check, &report_path);

  try {
    app.parse(argc, argv);
    have_seed = run_cmd->count("--seed") > 0;
    if ((*run_cmd || *prepare_cmd) && run.block_size % 8 != 0) {
      throw CLI::ValidationError("--block-size", "must be a multiple of 8");
    }
    if (no_check && history_path.empty()) {
      throw CLI::ValidationError("--no-check", "needs --history, or the run is lost");
    }
    if (history_path == "-" && !no_check) {
      throw CLI::ValidationError("--history", "'-' (standard output) needs --no-check");
    }
    // Written values are (worker id << 40) | sequence: ids need 24 bits.
    if (*run_cmd && (uint64_t{run.first_node} + run.mounts.size()) * run.procs > (1u << 24)) {
      throw CLI::ValidationError("--first-node", "(first node + mounts) x procs exceeds 2^24");
    }
    if (start_at > 0) {
      const double now =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      if (start_at > now + 3600) {
        throw CLI::ValidationError("--start-at", "is more than an hour from now");
      }
      run.start_at_ns = static_cast<int64_t>(start_at * 1e9);
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
      run.realtime_clock = clock == "realtime";
      RunResult result = RunWorkload(run);
      if (result.stopped_early) {
        fprintf(stderr, "dfuse-checker: duration limit reached after %zu operations\n",
                result.history.size());
      }
      if (!history_path.empty()) {
        std::ofstream file;
        if (history_path != "-") file.open(history_path);
        std::ostream& out = history_path == "-" ? std::cout : file;
        WriteHistory(out, result.history);
        if (!out.flush()) throw std::runtime_error("cannot write the history to " + history_path);
      }
      if (no_check) return kExitPass;
      const Report report = CheckHistory(result.history, check);
      nlohmann::json json = ReportToJson(report);
      json["seed"] = run.seed;
      json["mounts"] = run.mounts;
      json["run_seconds"] = result.seconds;
      json["stopped_early"] = result.stopped_early;
      return Conclude(report, std::move(json), report_path);
    }
    if (*prepare_cmd) {
      CreateFiles(run);
      return kExitPass;
    }
    std::vector<std::vector<Op>> parts;
    for (const std::string& path : history_paths) {
      std::ifstream in(path);
      if (!in) throw std::runtime_error("cannot open " + path);
      try {
        parts.push_back(ReadHistory(in));
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(path + ": " + e.what());
      }
    }
    std::vector<ClockBound> bounds;
    for (const std::string& text : clock_offsets) bounds.push_back(ParseClockBound(text));
    const Report report = CheckHistory(MergeHistories(std::move(parts), bounds), check);
    nlohmann::json json = ReportToJson(report);
    if (!bounds.empty()) {
      nlohmann::json offsets = nlohmann::json::array();
      for (const ClockBound& b : bounds) offsets.push_back({b.min_offset_ns, b.max_offset_ns});
      json["clock_offsets_ns"] = offsets;
    }
    return Conclude(report, std::move(json), report_path);
  } catch (const std::exception& e) {
    fprintf(stderr, "dfuse-checker: %s\n", e.what());
    return kExitError;
  }
}

}  // namespace
}  // namespace dfuse::checker

int main(int argc, char** argv) { return dfuse::checker::Main(argc, argv); }
