// Bounds shared by the lease manager and its agents.
#ifndef DFUSE_LEASE_LIMITS_H_
#define DFUSE_LEASE_LIMITS_H_

namespace dfuse::lease {

// Largest message either side accepts: a Hello that reclaims a few hundred
// thousand leases; every other message is far smaller. gRPC refuses a
// larger one with RESOURCE_EXHAUSTED and keeps serving.
inline constexpr int kMaxLeaseMessageBytes = 16 << 20;

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_LIMITS_H_
