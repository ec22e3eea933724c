#include "impl/common/client_main.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "impl/common/buffer_cache.h"
#include "impl/common/client_fs.h"
#include "impl/common/device_mount.h"
#include "impl/common/fuse_connection.h"
#include "impl/common/request_loop.h"
#include "impl/common/storage_client.h"
#include "util/grpc_shutdown.h"
#include "util/log.h"
#include "util/stats.h"
#include "util/strings.h"
#include "util/tls.h"

namespace dfuse {

namespace {

struct Settings {
  std::string storage;
  TlsFiles tls;
  std::string mountpoint;
  std::vector<std::string> fuse_options;
  bool background = false;
  bool debug = false;
  bool single_thread = false;
  std::string stats_file;
  double stats_interval = 0;
  std::string log_level = "info";
  std::string log_file;
  std::string node_name;
  std::string cache_size = "256M";
  uint64_t emulated_rtt_us = 0;
  uint64_t writeback_delay_ms = 1000;
  unsigned max_threads = 16;
  double shutdown_timeout = 15;
  int max_dirty_ratio = 0;  // 0: the kernel's (FUSE: 1 %)
  double storage_timeout = 60;
  double connect_timeout = 0;  // 0: --storage-timeout within 5 to 20 s
  std::string lease_manager;
  std::string fuse_device = "/dev/fuse";
};

// Mount options that only mean something to mount(8) or fstab.
bool IsMountOnlyOption(const std::string& opt) {
  static const std::set<std::string> kIgnored = {"_netdev", "defaults", "auto", "noauto",
                                                 "user",    "nouser",   "users", "nofail"};
  return kIgnored.count(opt) || opt.rfind("x-", 0) == 0 || opt.rfind("comment=", 0) == 0;
}

bool ParseSize(const std::string& text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno || end == text.c_str()) return false;
  std::string suffix(end);
  uint64_t mult = 1;
  if (suffix == "K" || suffix == "k") mult = 1ull << 10;
  else if (suffix == "M" || suffix == "m") mult = 1ull << 20;
  else if (suffix == "G" || suffix == "g") mult = 1ull << 30;
  else if (!suffix.empty()) return false;
  *out = v * mult;
  return true;
}

// Rewrites argv for CLI11: `-o a,b=c` entries that name one of the daemon's
// own flags become `--a`/`--b=c`; the rest are kept as FUSE mount options.
// As a mount helper, mount(8)'s own flags (-n -v -s -f, -t TYPE) are dropped.
std::vector<std::string> NormalizeArgs(int argc, char** argv, CLI::App* app, bool helper,
                                       Settings* s) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (helper && (a == "-n" || a == "-v" || a == "-s" || a == "-f")) continue;
    if (helper && a == "-t" && i + 1 < argc) {
      i++;
      continue;
    }
    std::string opts;
    if (a == "-o" && i + 1 < argc) {
      opts = argv[++i];
    } else if (a.rfind("-o", 0) == 0 && a.size() > 2 && a[2] != '-') {
      opts = a.substr(2);
    } else {
      out.push_back(a);
      continue;
    }
    for (const std::string& opt : Split(opts, ',')) {
      if (IsMountOnlyOption(opt)) continue;
      std::string key = opt.substr(0, opt.find('='));
      std::string flag = "--" + key;
      for (char& c : flag) c = c == '_' ? '-' : c;
      if (app->get_option_no_throw(flag) != nullptr) {
        out.push_back(opt.find('=') == std::string::npos ? flag
                                                         : flag + "=" + opt.substr(key.size() + 1));
      } else {
        s->fuse_options.push_back(opt);
      }
    }
  }
  std::reverse(out.begin(), out.end());  // CLI11 parses a reversed vector
  return out;
}

// Forks before any thread exists; the parent waits for the child to report
// that the mount is up (or why it failed) and exits with that status, which
// is what mount(8) expects of a helper.
class Daemonizer {
 public:
  // Returns false in the parent after the child reported; *status is the
  // exit code. Returns true in the child.
  bool Fork(int* status) {
    if (pipe(fds_) != 0) {
      std::perror("pipe");
      *status = 1;
      return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      *status = 1;
      return false;
    }
    if (pid > 0) {
      close(fds_[1]);
      char code = 1;
      std::string msg;
      char buf[512];
      ssize_t n = read(fds_[0], &code, 1);
      if (n != 1) code = 1;
      while ((n = read(fds_[0], buf, sizeof(buf))) > 0) msg.append(buf, n);
      if (!msg.empty()) std::fputs(msg.c_str(), stderr);
      *status = code;
      return false;
    }
    close(fds_[0]);
    setsid();
    active_ = true;
    return true;
  }

  // Child: report the outcome to the waiting parent and detach stdio.
  void Report(int code, const std::string& message) {
    if (!active_) return;
    char c = static_cast<char>(code);
    (void)!write(fds_[1], &c, 1);
    if (!message.empty()) (void)!write(fds_[1], message.data(), message.size());
    close(fds_[1]);
    active_ = false;
  }

  bool active() const { return active_; }

 private:
  int fds_[2] = {-1, -1};
  bool active_ = false;
};

std::atomic<bool> g_exiting{false};

extern "C" char** environ;

// Runs a command in a child process and waits for it until `deadline`, then
// kills it. Returns true if it exited 0 in time.
bool RunUntil(const std::vector<std::string>& argv, std::chrono::steady_clock::time_point deadline) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return false;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void RedirectStdio(const std::string& log_file) {
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    if (log_file.empty()) dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
  }
}

// The parts of a running client, declared in dependency order: each uses
// only those above it, so destruction (bottom up) never leaves one calling
// into a destroyed one. Stop() ends the policy's threads, which may call
// into the FUSE session, before the session is destroyed.
struct ClientNode {
  ClientNode(const StorageClientOptions& sopts, const BufferCacheOptions& copts,
             StatsRegistry* registry)
      : stats(registry), storage(sopts, stats), backend(&storage), cache(copts, &backend, stats) {
    // Every change to a file's data carries the policy's fencing token: the
    // buffer cache's write-back here, truncates and fallocates in the core.
    backend.set_fence_source([this](uint64_t gfid) {
      ConsistencyPolicy* p = token_policy.load();
      return p ? p->WriteFence(gfid) : Fence();
    });
    // ... and acts for the user who opened the file for writing.
    backend.set_writer_source([this](uint64_t gfid) { return writers.Of(gfid); });
    // The policy hears of every change this node makes to a file on storage.
    storage.OnChange([this](uint64_t gfid) {
      if (ConsistencyPolicy* p = token_policy.load()) p->ChangingOnStorage(gfid);
    });
    // A file the kernel forgot is forgotten here once written back.
    backend.set_drop_hook([this](uint64_t gfid) {
      writers.Forget(gfid);
      storage.ForgetHandle(gfid);
    });
  }
  ~ClientNode() { Stop(); }
  ClientNode(const ClientNode&) = delete;
  ClientNode& operator=(const ClientNode&) = delete;

  // Makes and starts the mode's policy (which may adjust *cache_policy),
  // then the file system. Returns 0 or an errno with a one-line *error.
  int Start(const PolicyFactory& make_policy, PolicyContext ctx, CachePolicy* cache_policy,
            std::string* error) {
    ctx.cache = &cache;
    ctx.storage = &storage;
    ctx.stats = stats;
    policy = make_policy(ctx);
    token_policy.store(policy.get());
    if (const int err = policy->Start(cache_policy, error); err != 0) return err;
    fs = std::make_unique<ClientFs>(*cache_policy, ctx.root_gfid, &storage, &cache, policy.get(),
                                    &writers, stats);
    return 0;
  }

  // Unmounted: writes everything back, then stops the policy. The buffer
  // cache outlives the policy (the policy uses it): its flusher stops
  // first, and data still dirty after a failed write-back goes without a
  // token, which storage refuses for a leased file. Returns the
  // write-back's errno. Idempotent.
  int Stop() {
    if (stopped) return 0;
    stopped = true;
    cache.StopFlusher();
    const int err = cache.FlushAll();
    if (err) spdlog::error("final write-back failed: errno {}", err);
    if (policy) policy->Stop();
    token_policy.store(nullptr);
    return err;
  }

  StatsRegistry* const stats;
  std::atomic<ConsistencyPolicy*> token_policy{nullptr};  // policy, while it runs
  StorageClient storage;
  FileWriters writers;
  StorageCacheBackend backend;
  BufferCache cache;
  std::unique_ptr<ConsistencyPolicy> policy;
  std::unique_ptr<ClientFs> fs;
  bool stopped = false;
};

int RunClient(int argc, char** argv, const ClientModeSpec& spec) {
  const std::string prog = std::strrchr(argv[0], '/') ? std::strrchr(argv[0], '/') + 1 : argv[0];
  const bool helper = prog.rfind("mount.", 0) == 0;
  CachePolicy policy = spec.policy;
  Settings s;
  s.background = helper;

  CLI::App app(spec.summary, "dfuse-" + policy.mode);
  app.add_option("storage", s.storage, "storage service address, host:port")->required();
  app.add_option("mountpoint", s.mountpoint, "directory to mount on")->required();
  bool foreground = true;
  app.add_flag("-f,--foreground", foreground, "run in the foreground (the default)");
  app.add_flag("--background", s.background, "detach once mounted (the default as a mount helper)");
  app.add_flag("-d,--debug", s.debug, "log every FUSE request (libfuse debug)");
  app.add_flag("--single-thread", s.single_thread, "serve requests on one thread");
  app.add_option("--max-threads", s.max_threads, "most FUSE worker threads")
      ->check(CLI::Range(1, 1024));
  app.add_option("--stats", s.stats_file, "write JSON stats here on SIGUSR1 and at exit");
  app.add_option("--stats-interval", s.stats_interval, "also write stats every N seconds")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-level", s.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--log-file", s.log_file, "append logs here (useful with --background)");
  app.add_option("--node-name", s.node_name, "name of this client node in logs and stats");
  app.add_option("--cache-size", s.cache_size, "userspace buffer cache size (K/M/G suffix)");
  app.add_option("--writeback-delay-ms", s.writeback_delay_ms,
                 "background write-back of data dirty this long");
  app.add_option("--max-dirty-ratio", s.max_dirty_ratio,
                 "percent of the machine's dirty-page limit the mount's kernel page cache may "
                 "hold (its bdi max_ratio; FUSE's default 1 throttles a write-back cache to a "
                 "few MB; needs root)")
      ->check(CLI::Range(1, 100));
  app.add_option("--shutdown-timeout", s.shutdown_timeout,
                 "seconds SIGTERM may spend writing back before the daemon exits anyway")
      ->check(CLI::PositiveNumber);
  app.add_option("--storage-timeout", s.storage_timeout,
                 "seconds a call waits for an unreachable storage service before it fails "
                 "with EIO (a revoke then discards the data it could not write back)")
      ->check(CLI::PositiveNumber);
  app.add_option("--connect-timeout", s.connect_timeout,
                 "seconds the daemon waits at start for its first answer from the storage "
                 "service and the lease manager (default: --storage-timeout, within 5 to 20)")
      ->check(CLI::PositiveNumber);
  AddTlsOptions(&app, &s.tls);
  app.add_option("--emulated-rtt-us", s.emulated_rtt_us,
                 "add this network round trip to every storage call (network emulation)");
  const bool extended = !spec.device.empty();
  if (spec.lease_manager != LeaseManagerFlag::kNone) {
    CLI::Option* o = app.add_option("--lease-manager", s.lease_manager,
                                     "lease manager address(es), host:port[,host:port...]" +
                                         spec.lease_manager_help);
    if (spec.lease_manager == LeaseManagerFlag::kRequired) o->required();
  }
  if (extended) {
    s.fuse_device = spec.device;
  } else {
    app.add_option("--fuse-device", s.fuse_device,
                   "FUSE device to mount: /dev/fuse (stock driver, the default) or /dev/dfuse "
                   "(dfuse.ko, so every mode can be compared on one driver)");
  }
  if (spec.add_options) spec.add_options(&app, &policy);
  app.footer(
      "FUSE mount options go in -o (e.g. -o allow_other,ro); the daemon's own flags may be given\n"
      "there too (e.g. -o cache_size=1G). As a mount helper: mount -t fuse.dfuse-" +
      policy.mode + " HOST:PORT MOUNTPOINT");

  std::vector<std::string> args = NormalizeArgs(argc, argv, &app, helper, &s);
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), msg.c_str());
    return 1;
  };
  uint64_t cache_bytes = 0;
  if (!ParseSize(s.cache_size, &cache_bytes)) return fail("bad --cache-size '" + s.cache_size + "'");
  if (s.storage.find(':') == std::string::npos) {
    return fail("storage address '" + s.storage + "' must be host:port");
  }
  if (std::string error;
      !CheckTransportChoice(s.tls, &error) || !CheckPlaintextAddress(s.tls, s.storage, &error)) {
    return fail(error);
  }
  for (const std::string& manager : Split(s.lease_manager, ',')) {
    if (std::string error; !CheckPlaintextAddress(s.tls, manager, &error)) return fail(error);
  }
  struct stat st;
  if (stat(s.mountpoint.c_str(), &st) != 0) {
    return fail("mountpoint " + s.mountpoint + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return fail("mountpoint " + s.mountpoint + " is not a directory");
  char real[PATH_MAX];
  if (realpath(s.mountpoint.c_str(), real)) s.mountpoint = real;

  // The device must exist before anything forks or connects.
  const bool own_mount = s.fuse_device != "/dev/fuse";
  const std::string fstype =
      extended ? spec.fstype : s.fuse_device == "/dev/dfuse" ? "dfuse" : "fuse";
  if (own_mount) {
    const bool usable = access(s.fuse_device.c_str(), R_OK | W_OK) == 0;
    const std::string why = usable ? "" : errno == ENOENT ? "missing" : std::strerror(errno);
    const bool registered = KernelHasFilesystem(fstype);
    if (!usable || !registered) {
      std::string msg = s.fuse_device + " is not available (" + (usable ? "present" : why) +
                        ", file system type " + fstype +
                        (registered ? " registered)" : " not registered)");
      if (!spec.missing_module_hint.empty()) msg += ": " + spec.missing_module_hint;
      return fail(msg);
    }
  }

  Daemonizer daemon;
  if (s.background) {
    int status = 0;
    if (!daemon.Fork(&status)) return status;
  }
  auto fail_daemon = [&](const std::string& msg) {
    const std::string line = prog + ": error: " + msg + "\n";
    if (daemon.active()) {
      daemon.Report(1, line);
    } else {
      std::fputs(line.c_str(), stderr);
    }
    return 1;
  };
  if (!s.log_file.empty() && !std::freopen(s.log_file.c_str(), "a", stderr)) {
    return fail_daemon("cannot open log file " + s.log_file);
  }
  InitLogging(s.node_name.empty() ? policy.mode : s.node_name, s.log_level);

  // Every thread created from here on inherits this mask; the signal thread
  // below is the only one that takes these signals.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&sigs, sig);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::string error;
  // One set of credentials for the storage and lease manager links.
  const auto credentials = ChannelCredentials(s.tls, &error);
  if (!credentials) return fail_daemon(error);
  StatsRegistry stats;
  StorageClientOptions sopts;
  sopts.address = s.storage;
  sopts.credentials = credentials;
  sopts.emulated_rtt = std::chrono::microseconds(s.emulated_rtt_us);
  sopts.unavailable_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(s.storage_timeout * 1000));
  BufferCacheOptions copts;
  copts.capacity_bytes = cache_bytes;
  copts.writeback_delay = std::chrono::milliseconds(s.writeback_delay_ms);
  // What the daemon does on its own (a revoke's fsync, attribute refreshes)
  // names no user: it acts for the export rule's anonymous user, whom every
  // rule allows. Users' requests name their user, and data written back
  // after them its writer (caller_scope.h).
  CallerScope::SetProcessDefault(std::nullopt);
  ClientNode node(sopts, copts, &stats);
  proto::RootReply root;
  // A storage service (and then a lease manager) that is up but slow to
  // answer (a loaded machine) is waited for, as calls wait for it later
  // (--storage-timeout, within 5 to 20 s, unless --connect-timeout says); a
  // wrong address takes this long to report.
  const std::chrono::milliseconds first_contact =
      s.connect_timeout > 0
          ? std::chrono::milliseconds(static_cast<int64_t>(s.connect_timeout * 1000))
          : std::clamp(sopts.unavailable_timeout, std::chrono::milliseconds(5000),
                       std::chrono::milliseconds(20000));
  // Said before the wait, so that a client stuck here has a log that says so.
  spdlog::info("contacting the storage service at {} (waiting up to {} ms)", s.storage,
               first_contact.count());
  if (node.storage.GetRoot(first_contact, &root, &error) != 0) {
    return fail_daemon(error);
  }
  PolicyContext pctx;
  pctx.root_gfid = root.attr().gfid();
  pctx.lease_manager = s.lease_manager;
  pctx.credentials = credentials;
  pctx.node_name = s.node_name.empty() ? s.mountpoint : s.node_name;
  pctx.emulated_rtt = std::chrono::microseconds(s.emulated_rtt_us);
  pctx.first_contact = first_contact;
  if (node.Start(spec.make_policy, pctx, &policy, &error) != 0) return fail_daemon(error);
  ClientFs& fs = *node.fs;
  fs.set_root_squashed(root.root_squashed());
  ConsistencyPolicy& consistency = *node.policy;

  std::string opts = "fsname=dfuse:" + s.storage + ",subtype=dfuse-" + policy.mode +
                     ",default_permissions";
  if (geteuid() == 0) opts += ",allow_other";
  for (const std::string& o : s.fuse_options) opts += "," + o;
  std::vector<std::string> fargs = {prog, "-o", opts};
  if (s.debug) fargs.push_back("-d");
  std::vector<char*> fargv;
  for (std::string& a : fargs) fargv.push_back(a.data());
  fuse_args fuse_argv = FUSE_ARGS_INIT(static_cast<int>(fargv.size()), fargv.data());
  fuse_session* se = fuse_session_new(&fuse_argv, &ClientFs::Ops(), sizeof(fuse_lowlevel_ops), &fs);
  fuse_opt_free_args(&fuse_argv);  // libfuse copied them when it parsed them
  if (se == nullptr) return fail_daemon("bad FUSE options: " + opts);
  std::string mount_target = s.mountpoint;
  if (own_mount) {
    DeviceMount dm;
    dm.device = s.fuse_device;
    dm.fstype = fstype;
    dm.mountpoint = s.mountpoint;
    dm.options = Split(opts, ',');
    for (const std::string& o : consistency.MountOptions()) dm.options.push_back(o);
    const int fd = MountFuseDevice(dm, &error);
    if (fd < 0) {
      fuse_session_destroy(se);
      return fail_daemon(error);
    }
    mount_target = "/dev/fd/" + std::to_string(fd);
  }
  if (fuse_session_mount(se, mount_target.c_str()) != 0) {
    fuse_session_destroy(se);
    if (own_mount) umount2(s.mountpoint.c_str(), MNT_DETACH);
    return fail_daemon("cannot mount on " + s.mountpoint);
  }
  const int fuse_conn = FuseConnectionOf(s.mountpoint);  // for a forced exit
  if (s.max_dirty_ratio > 0) {
    if (std::string why; !SetMaxDirtyRatio(fuse_conn, s.max_dirty_ratio, &why)) {
      spdlog::warn("--max-dirty-ratio not applied: {}", why);
    }
  }
  fs.Start(se);
  consistency.ServeAttrsFrom([&fs](uint64_t gfid, struct stat* st, double* timeout) {
    return fs.AttrOf(gfid, st, timeout);
  });
  consistency.Attach(se);
  spdlog::info("mounted {} on {} (mode {}, cache {} MiB, storage shard {})", s.storage,
               s.mountpoint, policy.mode, cache_bytes >> 20, root.shard_id());
  if (daemon.active()) {
    daemon.Report(0, "");
    RedirectStdio(s.log_file);
  }

  auto dump_stats = [&] {
    if (s.stats_file.empty()) return;
    nlohmann::json j = stats.ToJson();
    j["mode"] = policy.mode;
    j["node"] = s.node_name;
    j["cache"] = {{"cached_bytes", node.cache.cached_bytes()},
                  {"dirty_bytes", node.cache.dirty_bytes()}};
    const std::string tmp = s.stats_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    const std::string text = j.dump(2) + "\n";
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), s.stats_file.c_str());
  };

  // Signals: SIGUSR1 dumps stats; SIGTERM/SIGINT/SIGHUP write everything
  // back and unmount, which ends the request loop. The daemon never touches
  // its own mount itself (a request it cannot answer would wedge it for
  // good); the kernel's dirty pages are pushed by a child `sync -f`. Every
  // step shares one deadline, so an unreachable storage service delays the
  // exit but cannot prevent it.
  std::thread signal_thread([&] {
    auto last_dump = std::chrono::steady_clock::now();
    while (!g_exiting.load()) {
      timespec tick{0, 200 * 1000 * 1000};
      int sig = sigtimedwait(&sigs, nullptr, &tick);
      if (s.stats_interval > 0 &&
          std::chrono::steady_clock::now() - last_dump >=
              std::chrono::duration<double>(s.stats_interval)) {
        dump_stats();
        last_dump = std::chrono::steady_clock::now();
      }
      if (sig == SIGUSR1) dump_stats();
      if (sig != SIGTERM && sig != SIGINT && sig != SIGHUP) continue;
      spdlog::info("signal {}: writing back and unmounting", sig);
      const auto grace = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::duration<double>(s.shutdown_timeout));
      const auto deadline = std::chrono::steady_clock::now() + grace;
      node.storage.LimitWaitsTo(std::chrono::system_clock::now() + grace);
      if (!RunUntil({"sync", "-f", s.mountpoint}, deadline)) {
        spdlog::warn("kernel write-back did not finish in time");
      }
      int err = node.cache.FlushAll();
      if (err) spdlog::error("write-back to storage failed: errno {}", err);
      node.storage.CancelAll();  // requests still waiting on storage fail now
      if (umount2(s.mountpoint.c_str(), MNT_DETACH) != 0) {
        spdlog::warn("unmount {}: {}", s.mountpoint, std::strerror(errno));
      }
      // A detached mount that a process still uses keeps the connection
      // open; give the loop a moment to end on its own, then leave anyway.
      for (int i = 0; i < 20 && !g_exiting.load(); i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!g_exiting.load()) {
        spdlog::warn("mount still in use after unmount; aborting the connection and exiting");
        // A thread of ours may wait in the kernel for a request that only
        // we could answer, which would keep this process from ever ending
        // (fuse_connection.h).
        std::string why;
        if (!AbortFuseConnection(fuse_conn, &why)) spdlog::warn("cannot abort: {}", why);
        dump_stats();
        std::_Exit(err ? 1 : 0);
      }
      break;
    }
  });

  int ret;
  if (own_mount) {
    // Our own loop: it sees every raw request (the extension's opcodes)
    // and serves a device libfuse did not open.
    RequestInterceptor intercept = [&consistency](const fuse_in_header& h, const char* arg,
                                                  size_t size) {
      return consistency.Intercept(h, arg, size);
    };
    ret = RunRequestLoop(se, s.single_thread ? 1 : s.max_threads, intercept);
  } else if (s.single_thread) {
    ret = fuse_session_loop(se);
  } else {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    fuse_loop_cfg_set_max_threads(cfg, s.max_threads);
    ret = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  g_exiting = true;
  signal_thread.join();
  fuse_session_unmount(se);
  const int err = node.Stop();
  dump_stats();
  fuse_session_destroy(se);
  spdlog::info("unmounted {}", s.mountpoint);
  return ret == 0 && err == 0 ? 0 : 1;
}

}  // namespace

void AddLingerOption(CLI::App* app, CachePolicy* policy) {
  app->add_option("--linger", policy->linger,
                  "Let the lease manager revoke before its minimum hold is over and keep the "
                  "lease only while it is in use (up to what is left of the hold); false: the "
                  "manager waits the hold out")
      ->capture_default_str();
}

int RunClientDaemon(int argc, char** argv, const ClientModeSpec& spec) {
  const int status = RunClient(argc, argv, spec);
  // Every channel went with RunClient's locals; gRPC's own clean-up may
  // still be ending its threads.
  WaitForGrpcShutdownAtExit();
  return status;
}

}  // namespace dfuse
