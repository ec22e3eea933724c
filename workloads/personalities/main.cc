// dfuse-personality: the paper's filebench workloads (fileserver, webserver,
// netsfs; Table 2) as one small tool. `create` lays out a fileset, `run`
// drives it for a fixed time and prints a JSON summary, `present` says which
// files exist (for `run --present`, so a run need not stat them first).
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "workloads/personalities/personality.h"

namespace dfuse::personality {
namespace {

int Main(int argc, char** argv) {
  CLI::App app{
      "Filebench-style personalities (fileserver, webserver, netsfs) with the\n"
      "parameters of the DFUSE paper's Table 2. `create` lays out a fileset,\n"
      "`run` drives it from several threads and prints a JSON summary.\n"
      "`present` prints which files exist, for `run --present` on another node.\n"
      "Exit status: 0 done, 2 usage or I/O error."};
  app.require_subcommand(1);

  std::string name, json_path, present;
  RunOptions o;
  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("--personality", name, "fileserver, webserver or netsfs")
        ->required()
        ->check(CLI::IsMember(PersonalityNames()));
    cmd->add_option("--dir", o.dir, "Fileset root directory")->required();
    cmd->add_option("--files", o.files, "Files in the fileset (default: Table 2)");
    cmd->add_option("--dir-width", o.dir_width, "Entries per directory (default: Table 2)");
    cmd->add_option("--file-size", o.file_size, "Bytes per file (default: Table 2)");
  };
  CLI::App* create_cmd = app.add_subcommand("create", "Lay out the fileset");
  add_common(create_cmd);
  CLI::App* run_cmd = app.add_subcommand("run", "Run the personality on a fileset");
  add_common(run_cmd);
  run_cmd->add_option("--threads", o.threads, "Worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  run_cmd->add_option("--seconds", o.seconds, "Run time")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  run_cmd->add_option("--seed", o.seed, "Random seed")->capture_default_str();
  run_cmd->add_option("--log-name", o.log_name, "Log file (under --dir) for webserver's appends")
      ->capture_default_str();
  run_cmd->add_option("--json", json_path, "Write the summary here instead of stdout");
  run_cmd->add_option("--present", present,
                      "Which files exist at the start, as `present` printed it (default: stat "
                      "every file first)");
  CLI::App* present_cmd =
      app.add_subcommand("present", "Print which files of the fileset exist, for run --present");
  add_common(present_cmd);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  try {
    const Personality& p = *FindPersonality(name);
    o = WithDefaults(p, o);
    if (*create_cmd) {
      const size_t made = CreateFileset(p, o);
      fprintf(stderr, "dfuse-personality: %s fileset in %s: %zu of %zu files, %llu bytes each\n",
              p.name.c_str(), o.dir.c_str(), made, o.files,
              static_cast<unsigned long long>(o.file_size));
      return 0;
    }
    if (*present_cmd) {
      printf("%s\n", PresentFiles(o).c_str());
      return 0;
    }
    if (!present.empty()) o.present = ParsePresent(present, o.files);
    const nlohmann::json summary = RunWorkload(p, o);
    const std::string text = summary.dump(2) + "\n";
    if (json_path.empty()) {
      fputs(text.c_str(), stdout);
    } else {
      std::ofstream out(json_path);
      out << text;
      if (!out.flush()) throw std::runtime_error("cannot write " + json_path);
    }
    fprintf(stderr, "dfuse-personality: %s: %.1f ops/s, %.2f MB/s, %.3f ms/op, %llu races\n",
            p.name.c_str(), summary["ops_per_s"].get<double>(), summary["mb_s"].get<double>(),
            summary["mean_latency_ms"].get<double>(),
            static_cast<unsigned long long>(summary["races"].get<uint64_t>()));
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "dfuse-personality: %s\n", e.what());
    return 2;
  }
}

}  // namespace
}  // namespace dfuse::personality

int main(int argc, char** argv) { return dfuse::personality::Main(argc, argv); }
