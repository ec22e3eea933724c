// dfuse-passthrough: mounts a local directory through FUSE with nothing in
// between (passthrough_fs.h), the ceiling the benchmarks compare the modes
// with. Runs in the foreground until unmounted or sent SIGINT / SIGTERM.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "workloads/passthrough/passthrough_fs.h"

namespace dfuse {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int Main(int argc, char** argv) {
  CLI::App app{
      "Mounts SOURCE on MOUNTPOINT through FUSE, passing every request straight\n"
      "to SOURCE: no storage service, no leases. The benchmarks' reference for\n"
      "what FUSE itself reaches on this machine. Stays in the foreground until\n"
      "unmounted (fusermount3 -u) or sent SIGINT / SIGTERM.\n"
      "Exit status: 0 unmounted, 1 mount failed, 2 usage error."};
  PassthroughOptions options;
  std::string mountpoint;
  int max_threads = 10;
  bool no_writeback = false, no_xattr = false;
  app.add_option("source", options.source, "Directory to serve")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("mountpoint", mountpoint, "Where to mount it")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_flag("--no-writeback", no_writeback,
               "Do not ask for the kernel's write-back cache (each write(2) a request)");
  app.add_flag("--no-xattr", no_xattr,
               "Serve no extended attributes: the kernel then skips the security.capability "
               "lookup it makes before every write(2)");
  app.add_option("--timeout", options.timeout_s, "Entry and attribute timeout, seconds")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", max_threads, "Most threads serving requests at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "dfuse-passthrough: %s\n", e.what());
    return kExitUsage;
  }
  options.writeback = !no_writeback;
  options.xattr = !no_xattr;

  std::string error;
  std::unique_ptr<PassthroughFs> fs = PassthroughFs::Open(options, &error);
  if (fs == nullptr) {
    std::fprintf(stderr, "dfuse-passthrough: %s\n", error.c_str());
    return kExitFailure;
  }
  // The modes mount with default_permissions too: the kernel checks access.
  std::vector<std::string> args = {"dfuse-passthrough", "-o",
                                   "default_permissions,fsname=dfuse-passthrough"};
  std::vector<char*> argv_fuse;
  for (std::string& a : args) argv_fuse.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv_fuse.size()), argv_fuse.data());
  fuse_session* se =
      fuse_session_new(&fargs, &PassthroughFs::Ops(), sizeof(fuse_lowlevel_ops), fs.get());
  if (se == nullptr) {
    std::fprintf(stderr, "dfuse-passthrough: cannot create a FUSE session\n");
    return kExitFailure;
  }
  int status = kExitFailure;
  if (fuse_set_signal_handlers(se) != 0) {
    std::fprintf(stderr, "dfuse-passthrough: cannot install signal handlers\n");
  } else if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    std::fprintf(stderr, "dfuse-passthrough: cannot mount on %s\n", mountpoint.c_str());
    fuse_remove_signal_handlers(se);
  } else {
    fuse_loop_config* loop = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(loop, static_cast<unsigned>(max_threads));
    // The loop returns the number of the signal that ended it, or -errno.
    status = fuse_session_loop_mt(se, loop) >= 0 ? 0 : kExitFailure;
    fuse_loop_cfg_destroy(loop);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return status;
}

}  // namespace
}  // namespace dfuse

int main(int argc, char** argv) { return dfuse::Main(argc, argv); }
