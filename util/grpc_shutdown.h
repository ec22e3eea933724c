// Waiting for the gRPC library to finish shutting down before the process
// exits.
//
// gRPC shuts itself down when its last object is destroyed, and when that
// happens on one of its own threads it hands the clean-up to a detached
// thread. A process that returns from main() meanwhile runs its exit
// handlers, OpenSSL's among them, while gRPC threads that did TLS work are
// still ending; their per-thread OpenSSL state is then never freed (a leak
// LeakSanitizer reports, and work running beside the exit handlers).
#ifndef DFUSE_UTIL_GRPC_SHUTDOWN_H_
#define DFUSE_UTIL_GRPC_SHUTDOWN_H_

#include <chrono>

namespace dfuse {

// Waits until no gRPC object is left and gRPC's own clean-up (joining its
// threads) has finished, or `limit` has passed. Call it after every server,
// channel and stub is destroyed. Returns whether gRPC is shut down.
bool WaitForGrpcShutdown(std::chrono::milliseconds limit);

// For a daemon's last step, after its servers and channels are destroyed:
// waits a few seconds at most, and logs a warning if gRPC is still shutting
// down then (the daemon exits anyway).
void WaitForGrpcShutdownAtExit();

}  // namespace dfuse

#endif  // DFUSE_UTIL_GRPC_SHUTDOWN_H_
