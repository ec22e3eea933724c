// A buffer cache backend with nothing behind it, for tests of the lease
// policies: with an empty cache, revokes and reaps have nothing to write
// back; every call fails with EIO (a WRITE holder's revoke asks storage
// for a hand-off anyway, and then hands nothing over).
#ifndef DFUSE_TESTS_SUPPORT_NO_BACKEND_H_
#define DFUSE_TESTS_SUPPORT_NO_BACKEND_H_

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "impl/common/buffer_cache.h"

namespace dfuse::test {

class NoBackend : public CacheBackend {
 public:
  int ReadExtents(uint64_t, const std::vector<Extent>&, std::vector<std::string>*,
                  uint64_t*) override {
    return EIO;
  }
  int WriteChunks(uint64_t, std::vector<Chunk>, const WriteExtras&, WriteResult*) override {
    writes++;
    return EIO;
  }

  std::atomic<int> writes{0};  // WriteChunks calls
};

}  // namespace dfuse::test

#endif  // DFUSE_TESTS_SUPPORT_NO_BACKEND_H_
