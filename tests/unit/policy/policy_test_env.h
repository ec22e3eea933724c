// One client node's parts a consistency policy works with (storage client,
// buffer cache), against the in-process storage server of StorageTest.
#ifndef DFUSE_TESTS_UNIT_POLICY_POLICY_TEST_ENV_H_
#define DFUSE_TESTS_UNIT_POLICY_POLICY_TEST_ENV_H_

#include <memory>
#include <string>

#include "impl/common/buffer_cache.h"
#include "impl/common/client_fs.h"
#include "impl/common/consistency.h"
#include "impl/common/storage_client.h"
#include "tests/unit/storage/storage_test_env.h"
#include "util/stats.h"

namespace dfuse::testing {

struct TestNode {
  explicit TestNode(int port) {
    StorageClientOptions o;
    o.address = "127.0.0.1:" + std::to_string(port);
    storage = std::make_unique<StorageClient>(o, &stats);
    backend = std::make_unique<StorageCacheBackend>(storage.get());
    BufferCacheOptions c;
    c.background_flusher = false;
    cache = std::make_unique<BufferCache>(c, backend.get(), &stats);
  }
  PolicyContext Context(uint64_t root, const std::string& lease_manager = "") {
    PolicyContext ctx;
    ctx.cache = cache.get();
    ctx.storage = storage.get();
    ctx.stats = &stats;
    ctx.root_gfid = root;
    ctx.lease_manager = lease_manager;
    ctx.node_name = "node";
    return ctx;
  }
  uint64_t Counter(const std::string& name) { return stats.GetCounter(name)->Get(); }

  StatsRegistry stats;
  std::unique_ptr<StorageClient> storage;
  std::unique_ptr<StorageCacheBackend> backend;
  std::unique_ptr<BufferCache> cache;
};

}  // namespace dfuse::testing

#endif  // DFUSE_TESTS_UNIT_POLICY_POLICY_TEST_ENV_H_
