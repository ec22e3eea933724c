// dfuse-lease-manager: grants, revokes and expires per-file leases for DFUSE
// clients.
//
// Alone (the default), it serves at once. With --etcd it is one of a highly
// available group (election.h): it serves as a standby, refusing clients
// with the leader's address, until it wins the election; then it serves with
// the epoch the election gave it, reclaim window first. If it loses
// leadership it stops serving and exits (status 3), so that a deposed
// manager never keeps granting; whatever supervises it restarts it as a
// standby.
//
// Without --etcd, the epoch must grow across restarts, because fencing tokens are
// (epoch << 40) | counter: a restarted manager that reused an epoch would
// hand out tokens that storage already saw. In order of preference:
//  --epoch N      as given (the caller keeps it growing);
//  --state-dir D  D/epoch holds the last epoch; each start uses it + 1 and
//                 writes it back durably before serving;
//  neither        the wall clock: 8-second slots since 2025-01-01 UTC, and
//                 the manager waits for its slot to end before serving, so a
//                 quick restart still gets a larger epoch (start-up takes up
//                 to 8 s; lasts until 2029, then --state-dir is required).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "lease/election.h"
#include "lease/manager_service.h"
#include "util/grpc_shutdown.h"
#include "util/log.h"
#include "util/signal_waiter.h"
#include "util/strings.h"

namespace {

constexpr int kExitFailure = 1;  // the manager could not start
constexpr int kExitUsage = 2;    // bad flags
constexpr int kExitDeposed = 3;  // lost the leadership (--etcd)

// How often a standby looks for a vacant leadership, and how often the
// leader checks its etcd lease is still renewed.
constexpr std::chrono::milliseconds kCampaignInterval{300};
constexpr std::chrono::milliseconds kLeaderCheckInterval{100};

constexpr uint64_t kMaxEpoch = (uint64_t{1} << 24) - 1;
constexpr int64_t kWallClockBase = 1735689600;  // 2025-01-01T00:00:00Z
constexpr int64_t kWallClockSlot = 8;           // seconds per wall-clock epoch

using dfuse::SignalWaiter;

// Plain text to etcd only on loopback, as everywhere else: an https:// or
// HOST:PORT endpoint needs the manager's TLS files, http:// is plain text.
bool CheckEtcdTransport(const dfuse::TlsFiles& tls, const std::string& endpoints,
                        std::string* error) {
  for (std::string endpoint : dfuse::Split(endpoints, ',')) {
    if (endpoint.rfind("https://", 0) == 0 && !tls.enabled()) {
      *error = "etcd endpoint " + endpoint + " needs --tls-ca, --tls-cert and --tls-key";
      return false;
    }
    if (endpoint.rfind("http://", 0) == 0) {
      endpoint = endpoint.substr(7);
      if (tls.enabled()) {
        *error = "etcd endpoint http://" + endpoint + " is plain text; with TLS give HOST:PORT";
        return false;
      }
    }
    if (!dfuse::CheckPlaintextAddress(tls, endpoint, error)) return false;
  }
  return true;
}

// Writes `text` to `path` via a temp file; with `durable`, fsyncs the file
// and its directory so the content survives a crash.
bool WriteFileAtomically(const std::string& path, const std::string& text, bool durable) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (durable) ok = ok && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  ok = ok && std::rename(tmp.c_str(), path.c_str()) == 0;
  if (ok && durable) {
    const std::string dir = std::filesystem::path(path).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok = dfd >= 0 && ::fsync(dfd) == 0;
    if (dfd >= 0) ::close(dfd);
  }
  return ok;
}

// The last epoch recorded in state_dir plus one, recorded before it is used.
bool NextPersistedEpoch(const std::string& state_dir, uint64_t* epoch, std::string* error) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    *error = "cannot create state dir " + state_dir + ": " + ec.message();
    return false;
  }
  const std::string path = state_dir + "/epoch";
  uint64_t last = 0;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    unsigned long long v = 0;
    const bool parsed = std::fscanf(f, "%llu", &v) == 1;
    std::fclose(f);
    if (!parsed) {
      *error = path + " does not hold an epoch number";
      return false;
    }
    last = v;
  } else if (errno != ENOENT) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  if (last >= kMaxEpoch) {
    *error = path + ": epochs exhausted (" + std::to_string(last) + ")";
    return false;
  }
  *epoch = last + 1;
  if (!WriteFileAtomically(path, std::to_string(*epoch) + "\n", /*durable=*/true)) {
    *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

// The current wall-clock slot plus one; returns once that slot has ended,
// so that no later start can compute the same epoch.
bool WallClockEpoch(uint64_t* epoch, std::string* error) {
  const int64_t now = std::time(nullptr);
  const int64_t slot = (now - kWallClockBase) / kWallClockSlot;
  if (now < kWallClockBase || slot + 1 > static_cast<int64_t>(kMaxEpoch)) {
    *error = "the wall clock gives no usable epoch; use --state-dir or --epoch";
    return false;
  }
  *epoch = slot + 1;
  const int64_t slot_end = kWallClockBase + (slot + 1) * kWallClockSlot;
  spdlog::info("epoch {} from the wall clock; waiting {} s for its slot to end", *epoch,
               slot_end - now);
  while (std::time(nullptr) < slot_end) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return true;
}

// HOST:PORT for clients, from the --listen address and the bound port.
std::string AdvertisedAddress(const std::string& listen, int port) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    host = name;
  }
  return host + ":" + std::to_string(port);
}

// Campaigns until elected, then serves until a signal or the loss of the
// leadership. Returns the exit status. SIGUSR1 calls `dump` throughout.
template <typename Dump>
int RunElected(const dfuse::lease::ElectionOptions& options, dfuse::lease::ManagerServer* server,
               SignalWaiter* signals, const Dump& dump) {
  // Built here, on the main thread: the keep-alive child dies with the
  // thread that forked it, so that thread must live as long as the manager.
  dfuse::lease::Election election(options);
  std::string error;
  if (!election.Check(&error)) {
    spdlog::error("{}", error);
    return kExitFailure;
  }
  spdlog::info("campaigning in election '{}' at {} as {}", options.name, options.endpoints,
               options.proposal);
  std::string last_leader = "?", last_error;
  for (;;) {
    const dfuse::lease::ElectionRound round = election.TryOnce();
    if (round.kind == dfuse::lease::ElectionRound::kLeader) {
      server->Activate(round.epoch);
      spdlog::info("elected: active with epoch {}", round.epoch);
      break;
    }
    if (round.kind == dfuse::lease::ElectionRound::kFollower) {
      server->SetLeader(round.leader);
      if (round.leader != last_leader) {
        spdlog::info("standby; the active manager is {}",
                     round.leader.empty() ? "(none yet)" : round.leader);
      }
      last_leader = round.leader;
      last_error.clear();
    } else if (round.error != last_error) {
      spdlog::warn("election: {}", round.error);  // etcd down: keep trying, as a standby
      last_error = round.error;
    }
    // Frequent stats requests (SIGUSR1) must not hold the next round off.
    const auto next_round = std::chrono::steady_clock::now() + kCampaignInterval;
    for (auto now = std::chrono::steady_clock::now(); now < next_round;
         now = std::chrono::steady_clock::now()) {
      const int sig =
          signals->WaitFor(std::chrono::duration_cast<std::chrono::milliseconds>(next_round - now) +
                           std::chrono::milliseconds(1));
      if (sig == 0) break;
      if (sig != SIGUSR1) return 0;
      dump();
    }
  }
  for (;;) {
    const int sig = signals->WaitFor(kLeaderCheckInterval);
    if (sig == SIGUSR1) dump();
    if (sig != 0 && sig != SIGUSR1) {
      // Stop serving first, then let a standby take over at once.
      server->Shutdown();
      election.Resign();
      return 0;
    }
    if (!election.StillLeader()) {
      spdlog::error("lost the leadership: stopping at once");
      server->Shutdown();
      return kExitDeposed;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  dfuse::lease::ManagerOptions opt;
  uint64_t epoch = 0;
  int64_t reclaim_ms = -1;
  std::string port_file, state_dir, stats_file, log_level = "info";
  dfuse::lease::ElectionOptions election_opt;
  CLI::App app{"dfuse-lease-manager: grants per-file read and write leases to DFUSE clients"};
  app.add_option("--listen", opt.listen, "HOST:PORT to serve on (port 0: any free port)")
      ->required();
  app.add_option("--port-file", port_file, "Write the bound port to this file");
  dfuse::AddTlsOptions(&app, &opt.tls);
  app.add_option("--term-ms", opt.term_ms,
                 "Lease term: a silent client's leases are regranted this long after its "
                 "last heartbeat")
      ->check(CLI::Range(uint64_t{1}, uint64_t{3600000}))
      ->capture_default_str();
  app.add_option("--min-hold-ms", opt.min_hold_ms,
                 "A lease is not revoked before it has been held this long (damps ping-pong); "
                 "a client that lingers (dfuse) is revoked at once and keeps it only while it "
                 "uses it, for at most the rest of the hold")
      ->capture_default_str();
  app.add_option("--max-hold-ms", opt.max_hold_ms,
                 "A contended lease is held as long as taking it away costs, up to this long "
                 "(at most --min-hold-ms: always --min-hold-ms)")
      ->capture_default_str();
  app.add_option("--epoch", epoch,
                 "Manager epoch, 1..16777215; must grow across restarts (default: from "
                 "--state-dir, else from the wall clock)")
      ->check(CLI::Range(uint64_t{1}, kMaxEpoch));
  app.add_option("--state-dir", state_dir, "Directory that keeps the last epoch across restarts");
  app.add_option("--reclaim-ms", reclaim_ms,
                 "Reclaim window at start (epochs after the first), in which clients of a "
                 "previous manager re-assert their leases before new ones are granted "
                 "(default: the term; 0: none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--etcd", election_opt.endpoints,
                 "etcd endpoints HOST:PORT[,...]: run as one of a highly available group, "
                 "active only while elected (the epoch then comes from etcd); reached over "
                 "https with this manager's --tls-* files, or in plain text with --plaintext "
                 "(loopback only)");
  app.add_option("--election-name", election_opt.name,
                 "With --etcd: managers with the same name form one group")
      ->capture_default_str();
  app.add_option("--advertise", election_opt.proposal,
                 "With --etcd: HOST:PORT clients reach this manager at (default: the --listen "
                 "host and the bound port)");
  app.add_option("--etcd-lease-ttl", election_opt.ttl_s,
                 "With --etcd: seconds a dead leader keeps the leadership (failover time)")
      ->check(CLI::Range(2, 60))
      ->capture_default_str();
  app.add_option("--max-sessions-per-client", opt.max_sessions_per_client,
                 "Sessions one client certificate may have open (0: no bound; not applied "
                 "in plain text)")
      ->capture_default_str();
  app.add_option("--max-pending-acquires", opt.max_pending_acquires,
                 "Acquires one session may have waiting for a grant (0: no bound)")
      ->capture_default_str();
  std::string fencing_key;
  app.add_option("--fencing-key", fencing_key,
                 "Secret shared with the storage service (tools/dfuse-certs fencing-key): each "
                 "WRITE grant carries its token's proof of origin for the client")
      ->check(CLI::ExistingFile);
  app.add_option("--stats", stats_file,
                 "Dump stats JSON here every second, on SIGUSR1 and at exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "dfuse-lease-manager: %s (see --help)\n", e.what());
    return kExitUsage;
  }
  if (!dfuse::InitLogging("lease-manager", log_level)) {
    std::fprintf(stderr, "dfuse-lease-manager: unknown --log-level %s (see --help)\n",
                 log_level.c_str());
    return kExitUsage;
  }
  if (std::string error; !dfuse::CheckTransportChoice(opt.tls, &error) ||
                         !CheckEtcdTransport(opt.tls, election_opt.endpoints, &error)) {
    std::fprintf(stderr, "dfuse-lease-manager: %s (see --help)\n", error.c_str());
    return kExitUsage;
  }
  if (!fencing_key.empty()) {
    std::string error;
    opt.fencing_key = dfuse::FencingKey::Load(fencing_key, &error);
    if (!opt.fencing_key) {
      std::fprintf(stderr, "dfuse-lease-manager: %s\n", error.c_str());
      return kExitUsage;
    }
  }
  // The manager reaches etcd as it serves its clients: with its own
  // certificate under the cluster CA, or in plain text on loopback.
  election_opt.tls_ca = opt.tls.ca;
  election_opt.tls_cert = opt.tls.cert;
  election_opt.tls_key = opt.tls.key;
  opt.reclaim_ms = reclaim_ms < 0 ? opt.term_ms : static_cast<uint64_t>(reclaim_ms);

  const bool ha = !election_opt.endpoints.empty();
  if (ha && (epoch != 0 || !state_dir.empty())) {
    std::fprintf(stderr,
                 "dfuse-lease-manager: --etcd takes the epoch from etcd; drop --epoch and "
                 "--state-dir (see --help)\n");
    return kExitUsage;
  }

  SignalWaiter signals;
  std::string error;
  if (ha) {
    // Fail before binding anything if etcd is not there.
    if (!dfuse::lease::Election(election_opt).Check(&error)) {
      std::fprintf(stderr, "dfuse-lease-manager: %s\n", error.c_str());
      return kExitFailure;
    }
    opt.standby = true;
  } else {
    const bool have_epoch = epoch != 0           ? true
                            : !state_dir.empty() ? NextPersistedEpoch(state_dir, &epoch, &error)
                                                 : WallClockEpoch(&epoch, &error);
    if (!have_epoch) {
      std::fprintf(stderr, "dfuse-lease-manager: %s\n", error.c_str());
      return kExitFailure;
    }
    opt.epoch = epoch;
  }
  auto server = dfuse::lease::ManagerServer::Start(opt, &error);
  if (!server) {
    std::fprintf(stderr, "dfuse-lease-manager: %s\n", error.c_str());
    return kExitFailure;
  }
  if (!port_file.empty() &&
      !WriteFileAtomically(port_file, std::to_string(server->port()) + "\n", /*durable=*/false)) {
    std::fprintf(stderr, "dfuse-lease-manager: cannot write port file %s\n", port_file.c_str());
    return kExitFailure;
  }
  if (ha) {
    spdlog::info("standby on {} (port {}), term {} ms, hold {}..{} ms, reclaim {} ms", opt.listen,
                 server->port(), opt.term_ms, opt.min_hold_ms, opt.max_hold_ms, opt.reclaim_ms);
  } else {
    spdlog::info("serving on {} (port {}), epoch {}, term {} ms, hold {}..{} ms, reclaim {} ms",
                 opt.listen, server->port(), opt.epoch, opt.term_ms, opt.min_hold_ms,
                 opt.max_hold_ms, opt.reclaim_ms);
  }

  auto dump = [&] {
    if (!stats_file.empty() && !server->DumpStats(stats_file)) {
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
  int exit_code = 0;
  if (!ha) {
    for (int sig; (sig = signals.Wait()) == SIGUSR1;) dump();
  } else {
    if (election_opt.proposal.empty()) {
      election_opt.proposal = AdvertisedAddress(opt.listen, server->port());
    }
    exit_code = RunElected(election_opt, server.get(), &signals, dump);
  }

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
  return exit_code;
}
