// LeaseMode to and from the wire.
#ifndef DFUSE_LEASE_LEASE_MODE_PROTO_H_
#define DFUSE_LEASE_LEASE_MODE_PROTO_H_

#include "lease/lease_mode.h"
#include "proto/lease.pb.h"

namespace dfuse::lease {

static_assert(static_cast<int>(LeaseMode::kNone) == proto::LEASE_NONE);
static_assert(static_cast<int>(LeaseMode::kRead) == proto::LEASE_READ);
static_assert(static_cast<int>(LeaseMode::kWrite) == proto::LEASE_WRITE);

// An unknown wire value is no lease.
inline LeaseMode FromProto(proto::LeaseMode mode) {
  switch (mode) {
    case proto::LEASE_READ:
      return LeaseMode::kRead;
    case proto::LEASE_WRITE:
      return LeaseMode::kWrite;
    default:
      return LeaseMode::kNone;
  }
}

inline proto::LeaseMode ToProto(LeaseMode mode) { return static_cast<proto::LeaseMode>(mode); }

}  // namespace dfuse::lease

#endif  // DFUSE_LEASE_LEASE_MODE_PROTO_H_
