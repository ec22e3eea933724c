// dfuse-storage: exports a local directory to DFUSE clients over gRPC.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "storage/server.h"
#include "util/gfid.h"
#include "util/grpc_shutdown.h"
#include "util/log.h"
#include "util/signal_waiter.h"
#include "util/tls.h"

namespace {

constexpr int kExitFailure = 1;  // the server could not start
constexpr int kExitUsage = 2;    // bad flags

bool WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  const bool ok = std::fprintf(f, "%d\n", port) > 0;
  return std::fclose(f) == 0 && ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  dfuse::storage::StorageOptions opt;
  std::string port_file, stats_file, log_level = "info", lost_replies;
  CLI::App app{"dfuse-storage: exports a local directory to DFUSE clients over gRPC"};
  app.add_option("--export", opt.export_dir, "Directory to export")->required();
  app.add_option("--listen", opt.listen, "HOST:PORT to serve on (port 0: any free port)")
      ->required();
  app.add_option("--state-dir", opt.state_dir,
                 "Directory for the persistent handle table (default: "
                 "<export>/../.<name>.dfuse-state; never inside the export)");
  app.add_option("--shard-id", opt.shard_id, "Shard id, the high 16 bits of every GFID")
      ->check(CLI::Range(1u, dfuse::kMaxShardId))
      ->capture_default_str();
  app.add_option("--threads", opt.threads,
                 "Threads waiting for calls; more start under load (0: gRPC's default)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--max-in-flight-per-client", opt.max_in_flight_per_client,
                 "Calls one client may have in progress; more are refused (0: no bound)")
      ->capture_default_str();
  std::vector<std::string> access_rules;
  std::string default_access = "rw,root_squash";
  app.add_option("--access", access_rules,
                 "NAME=OPTIONS: what the client whose certificate is NAME may do, and as whom "
                 "(repeat for more clients). OPTIONS, comma-separated as in exports(5): rw, ro "
                 "or none; root_squash (the default), no_root_squash or all_squash; "
                 "anonuid=N, anongid=N (default 65534); uids=A-B, gids=A-B (ids it may act as)")
      ->type_name("NAME=OPTIONS");
  app.add_option("--default-access", default_access,
                 "OPTIONS for other clients, and all clients in plain text")
      ->type_name("OPTIONS")
      ->capture_default_str();
  std::string fencing_key;
  app.add_option("--fencing-key", fencing_key,
                 "Secret shared with the lease managers (tools/dfuse-certs fencing-key): a "
                 "change under a fencing token needs the proof the manager granted with it")
      ->check(CLI::ExistingFile);
  app.add_option("--port-file", port_file, "Write the bound port to this file");
  dfuse::AddTlsOptions(&app, &opt.tls);
  app.add_option("--stats", stats_file,
                 "Dump stats JSON here every second, on SIGUSR1 and at exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  app.add_option("--inject-lost-replies", lost_replies,
                 "TESTING ONLY: apply the next N calls of each RPC and then answer them "
                 "UNAVAILABLE, as if the reply was lost (e.g. Mkdir:1,Rename:2)")
      ->type_name("RPC:N[,RPC:N...]")
      ->check([](const std::string& spec) {
        std::vector<std::pair<std::string, uint32_t>> parsed;
        std::string error;
        return dfuse::storage::ParseLostReplies(spec, &parsed, &error) ? std::string() : error;
      })
      ->group("Testing");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "dfuse-storage: %s (see --help)\n", e.what());
    return kExitUsage;
  }
  if (!lost_replies.empty()) {
    std::string error;  // checked while parsing
    dfuse::storage::ParseLostReplies(lost_replies, &opt.lost_replies, &error);
  }
  if (std::string error;
      !dfuse::CheckTransportChoice(opt.tls, &error) ||
      !dfuse::storage::AccessRules::Parse(access_rules, default_access, &opt.access, &error)) {
    std::fprintf(stderr, "dfuse-storage: %s (see --help)\n", error.c_str());
    return kExitUsage;
  }
  if (!fencing_key.empty()) {
    std::string error;
    opt.fencing_key = dfuse::FencingKey::Load(fencing_key, &error);
    if (!opt.fencing_key) {
      std::fprintf(stderr, "dfuse-storage: %s\n", error.c_str());
      return kExitUsage;
    }
  }
  if (!dfuse::InitLogging("storage", log_level)) {
    std::fprintf(stderr, "dfuse-storage: unknown --log-level %s (see --help)\n", log_level.c_str());
    return kExitUsage;
  }

  opt.handle_keys = true;  // GFIDs cannot be guessed into (storage/handle_secret.h)
  dfuse::SignalWaiter signals;
  std::string error;
  auto server = dfuse::storage::StorageServer::Start(opt, &error);
  if (!server) {
    std::fprintf(stderr, "dfuse-storage: %s\n", error.c_str());
    return kExitFailure;
  }
  if (!port_file.empty() && !WritePortFile(port_file, server->port())) {
    std::fprintf(stderr, "dfuse-storage: cannot write port file %s\n", port_file.c_str());
    return kExitFailure;
  }
  spdlog::info("serving export {} on {} (port {}), shard {}", opt.export_dir, opt.listen,
               server->port(), opt.shard_id);
  if (!lost_replies.empty()) spdlog::warn("testing: losing replies of {}", lost_replies);

  auto dump = [&] {
    if (!stats_file.empty() && !server->stats()->DumpToFile(stats_file)) {
      spdlog::warn("cannot write stats to {}", stats_file);
    }
  };
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread ticker;
  if (!stats_file.empty()) {
    ticker = std::thread([&] {
      std::unique_lock<std::mutex> l(mu);
      while (!cv.wait_for(l, std::chrono::seconds(1), [&] { return stopping; })) dump();
    });
  }
  for (int sig; (sig = signals.Wait()) == SIGUSR1;) dump();

  spdlog::info("shutting down");
  {
    std::lock_guard<std::mutex> l(mu);
    stopping = true;
  }
  cv.notify_all();
  if (ticker.joinable()) ticker.join();
  server->Shutdown();
  dump();
  server.reset();
  dfuse::WaitForGrpcShutdownAtExit();
  return 0;
}
