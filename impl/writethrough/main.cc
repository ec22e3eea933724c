// dfuse-writethrough: the paper's baseline. The kernel page cache is
// write-through, so every write reaches this daemon, which caches it in the
// userspace buffer cache. With --lease-manager, nodes stay strongly
// consistent through leases this daemon holds (userspace_leases.h);
// without, other nodes see a file's changes after it is closed
// (close-to-open, impl/common/close_to_open.h).
#include <memory>

#include "impl/common/client_main.h"
#include "impl/common/close_to_open.h"
#include "impl/writethrough/userspace_leases.h"

int main(int argc, char** argv) {
  dfuse::ClientModeSpec spec;
  spec.policy.mode = "writethrough";
  spec.policy.writeback_cache = false;
  spec.policy.keep_cache = false;
  spec.policy.auto_inval_data = false;
  // Off by default: each writethrough hand-off writes back and invalidates,
  // and handing over sooner made it no faster at any contended Fig. 7 point
  // (results/vm-fig7-wt-linger/).
  spec.policy.linger = false;
  spec.add_options = [](CLI::App* app, dfuse::CachePolicy* policy) {
    dfuse::AddLingerOption(app, policy);
  };
  spec.lease_manager = dfuse::LeaseManagerFlag::kOptional;
  spec.lease_manager_help =
      ": strong consistency through userspace leases (without it: close-to-open)";
  spec.make_policy =
      [](const dfuse::PolicyContext& ctx) -> std::unique_ptr<dfuse::ConsistencyPolicy> {
    if (ctx.lease_manager.empty()) return std::make_unique<dfuse::CloseToOpen>(ctx);
    return std::make_unique<dfuse::UserspaceLeases>(ctx);
  };
  spec.summary =
      "DFUSE client, writethrough mode: write-through kernel page cache, userspace buffer cache, "
      "strong consistency through userspace leases with --lease-manager (close-to-open "
      "without).";
  return dfuse::RunClientDaemon(argc, argv, spec);
}
