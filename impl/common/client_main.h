// The shared `main` of every client daemon: flags, mount, request loop,
// signals, stats and clean shutdown. Each impl/* passes what differs.
#ifndef DFUSE_IMPL_COMMON_CLIENT_MAIN_H_
#define DFUSE_IMPL_COMMON_CLIENT_MAIN_H_

#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "impl/common/consistency.h"
#include "impl/common/policy.h"

namespace dfuse {

// Whether a mode takes --lease-manager.
enum class LeaseManagerFlag { kNone, kOptional, kRequired };

struct ClientModeSpec {
  CachePolicy policy;   // the mode's defaults; policy.mode names the binary's subtype
  std::string summary;  // one paragraph for --help
  // Registers the mode's own flags, which adjust `policy` when parsed.
  std::function<void(CLI::App* app, CachePolicy* policy)> add_options;
  LeaseManagerFlag lease_manager = LeaseManagerFlag::kNone;
  std::string lease_manager_help;
  // Makes the mode's consistency policy (ctx.lease_manager is empty when
  // the flag was not given).
  PolicyFactory make_policy;
  // Modes that extend the kernel protocol: the device and file system type
  // they mount (the daemon mounts it itself and runs its own request loop,
  // whose raw requests the policy sees first).
  std::string device;
  std::string fstype;
  std::string missing_module_hint;  // shown when the device is missing
};

// Adds --linger (CachePolicy::linger) for a mode whose policy can linger.
void AddLingerOption(CLI::App* app, CachePolicy* policy);

// Runs a client daemon. Usage:
//   BIN [options] STORAGE_HOST:PORT MOUNTPOINT
// also as a mount helper (/sbin/mount.fuse.dfuse-MODE SOURCE MOUNTPOINT -o ...).
int RunClientDaemon(int argc, char** argv, const ClientModeSpec& spec);

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_CLIENT_MAIN_H_
