// dfuse-dfuse: write-back kernel page cache with strong consistency. The
// kernel keeps dirty pages and attributes under kernel-level leases that
// dfuse.ko asks this daemon for, and gives them up (writing back first)
// when the lease manager revokes them (impl/dfuse/kernel_leases.h).
#include <memory>

#include "impl/common/client_main.h"
#include "impl/dfuse/kernel_leases.h"

int main(int argc, char** argv) {
  dfuse::ClientModeSpec spec;
  spec.policy.mode = "dfuse";
  spec.policy.writeback_cache = true;
  spec.policy.keep_cache = true;      // pages stay valid until a revoke drops them
  spec.policy.auto_inval_data = false;
  // Another node sees this node's writes by taking the lease, whose revoke
  // writes them back first; close(2) has nothing to publish, so it only
  // reports lost data and leaves the write-back to the revoke, fsync or
  // the write-back delay.
  spec.policy.flush_on_close = false;
  spec.policy.attr_timeout = 0;  // links, and directories without directory leases
  spec.policy.leased_attr_timeout = 3600;
  spec.policy.dir_leases = true;
  spec.policy.linger = true;
  spec.add_options = [](CLI::App* app, dfuse::CachePolicy* policy) {
    app->add_option("--dir-leases", policy->dir_leases,
                    "Keep directories' names and attributes in the kernel under directory "
                    "leases (dfuse.ko's dirleases); false: every path component asks the "
                    "daemon, as writethrough does")
        ->capture_default_str();
    dfuse::AddLingerOption(app, policy);
  };
  spec.device = "/dev/dfuse";
  spec.fstype = "dfuse";
  spec.missing_module_hint =
      "load dfuse.ko first: build it with `make kernel` (Debian 12, kernel 6.1) and "
      "`insmod build/kernel/dfuse.ko`, or run inside the VM testbed: tools/dfuse-vm -- COMMAND";
  spec.summary =
      "DFUSE client, dfuse mode: write-back kernel page cache with strong consistency through "
      "kernel-level leases (needs dfuse.ko and a lease manager).";
  spec.lease_manager = dfuse::LeaseManagerFlag::kRequired;
  spec.make_policy = [](const dfuse::PolicyContext& ctx) {
    return std::make_unique<dfuse::KernelLeases>(ctx);
  };
  return dfuse::RunClientDaemon(argc, argv, spec);
}
