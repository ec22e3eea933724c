#include "util/grpc_shutdown.h"

#include <thread>

#include <grpc/grpc.h>
#include <spdlog/spdlog.h>

namespace dfuse {

bool WaitForGrpcShutdown(std::chrono::milliseconds limit) {
  // grpc_is_initialized() takes the lock gRPC's clean-up holds, and stays
  // true while a clean-up thread is pending, so false means done.
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (grpc_is_initialized()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void WaitForGrpcShutdownAtExit() {
  // Milliseconds normally; the bound only keeps a wedged gRPC thread from
  // holding up the exit that the daemon's supervisor waits for.
  constexpr std::chrono::seconds kLimit(5);
  if (!WaitForGrpcShutdown(kLimit)) spdlog::warn("gRPC still shutting down at exit");
}

}  // namespace dfuse
