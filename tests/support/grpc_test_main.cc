// main() of the unit tests that run gRPC servers and channels: GoogleTest's,
// then a wait for gRPC to finish shutting down (util/grpc_shutdown.h), so
// that the exit handlers and LeakSanitizer's check run after gRPC's threads
// are gone rather than beside them.
#include <chrono>
#include <cstdio>

#include <gtest/gtest.h>

#include "util/grpc_shutdown.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  if (!dfuse::WaitForGrpcShutdown(std::chrono::seconds(10))) {
    std::fprintf(stderr,
                 "gRPC was still initialized 10 s after the tests: a gRPC object was left alive\n");
    return result == 0 ? 1 : result;
  }
  return result;
}
