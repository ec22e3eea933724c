// dfuse-weakwriteback: stock FUSE write-back caching. Writes complete in the
// kernel page cache; no coordination between nodes: the performance upper
// bound, with weak consistency. Its promise is close-to-open (what JuiceFS
// and ceph-fuse users know): an open(2) that starts after another node's
// close(2) returned sees that node's data (writeback_close_to_open.h).
#include <memory>

#include "impl/common/client_main.h"
#include "impl/weakwriteback/writeback_close_to_open.h"

int main(int argc, char** argv) {
  dfuse::ClientModeSpec spec;
  spec.policy.mode = "weakwriteback";
  spec.policy.writeback_cache = true;
  spec.policy.keep_cache = true;
  spec.policy.auto_inval_data = true;
  spec.policy.attr_timeout = 1.0;
  spec.policy.entry_timeout = 1.0;
  spec.policy.negative_timeout = 1.0;
  spec.make_policy = [](const dfuse::PolicyContext& ctx) {
    return std::make_unique<dfuse::WriteBackCloseToOpen>(ctx);
  };
  spec.summary =
      "DFUSE client, weakwriteback mode: write-back kernel page cache, close-to-open consistency "
      "across nodes (an open after another node's close sees its data).";
  spec.add_options = [](CLI::App* app, dfuse::CachePolicy* policy) {
    app->add_option_function<double>(
           "--attr-timeout",
           [policy](double t) {
             policy->attr_timeout = t;
             policy->entry_timeout = t;
             policy->negative_timeout = t;
           },
           "kernel attribute and entry cache lifetime in seconds (default 1)")
        ->check(CLI::NonNegativeNumber);
    app->add_flag_callback(
        "--no-xattr", [policy] { policy->xattrs = false; },
        "serve no extended attributes (user xattrs, ACLs and file capabilities fail with "
        "EOPNOTSUPP); spares every write(2) the kernel's security.capability lookup");
  };
  return dfuse::RunClientDaemon(argc, argv, spec);
}
