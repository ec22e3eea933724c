// The strength of a lease: one type for the lease manager's state machine,
// the client's agent, the wire (proto::LeaseMode, lease_mode_proto.h) and
// dfuse.ko's protocol (kernel/dfuse/dfuse_proto.h, whose values
// impl/dfuse/kernel_leases.cc checks against these at compile time).
#ifndef DFUSE_LEASE_LEASE_MODE_H_
#define DFUSE_LEASE_LEASE_MODE_H_

#include <cstdint>

namespace dfuse::lease {

// Ordered by strength: a stronger mode satisfies a weaker request.
enum class LeaseMode : uint8_t { kNone = 0, kRead = 1, kWrite = 2 };

// "none", "read" or "write", for logs and state dumps.
constexpr const char* ToString(LeaseMode mode) {
  return mode == LeaseMode::kWrite ? "write" : mode == LeaseMode::kRead ? "read" : "none";
}

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_LEASE_MODE_H_
