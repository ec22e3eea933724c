// dfuse-writethrough: the paper's baseline. The kernel page cache is
// write-through, so every write reaches this daemon, which caches it in the
// userspace buffer cache. Until the lease protocol arrives, other nodes see a
// file's changes after it is closed (close-to-open): attributes and entries
// are never cached by the kernel, and every open revalidates cached data.
#include "impl/common/client_main.h"

int main(int argc, char** argv) {
  dfuse::ClientModeSpec spec;
  spec.policy.mode = "writethrough";
  spec.policy.writeback_cache = false;
  spec.policy.keep_cache = false;
  spec.policy.auto_inval_data = false;
  spec.policy.revalidate_on_open = true;
  spec.policy.userspace_leases = true;
  spec.summary =
      "DFUSE client, writethrough mode: write-through kernel page cache, userspace buffer cache, "
      "close-to-open consistency across nodes.";
  return dfuse::RunClientDaemon(argc, argv, spec);
}
