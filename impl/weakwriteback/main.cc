// dfuse-weakwriteback: stock FUSE write-back caching. Writes complete in the
// kernel page cache; other nodes see changes only once the kernel has written
// them back and their own attribute/entry caches expire. No coordination at
// all: the performance upper bound, with weak consistency.
#include "impl/common/client_main.h"

int main(int argc, char** argv) {
  dfuse::ClientModeSpec spec;
  spec.policy.mode = "weakwriteback";
  spec.policy.writeback_cache = true;
  spec.policy.keep_cache = true;
  spec.policy.auto_inval_data = true;
  spec.policy.revalidate_on_open = false;
  spec.policy.attr_timeout = 1.0;
  spec.policy.entry_timeout = 1.0;
  spec.policy.negative_timeout = 1.0;
  spec.summary =
      "DFUSE client, weakwriteback mode: write-back kernel page cache with time-based (weak) "
      "consistency across nodes.";
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
  };
  return dfuse::RunClientDaemon(argc, argv, spec);
}
