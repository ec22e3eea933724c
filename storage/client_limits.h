// A bound on each client's calls in progress at the storage service, so that
// one client that floods it gets RESOURCE_EXHAUSTED while the others keep
// being served (the synchronous gRPC server would otherwise give the flood
// a thread per call). A client is the common name of its certificate under
// TLS, else its connection (peer address and port).
#ifndef DFUSE_STORAGE_CLIENT_LIMITS_H_
#define DFUSE_STORAGE_CLIENT_LIMITS_H_

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include <grpcpp/server_context.h>

namespace dfuse::storage {

class ClientLimits {
 public:
  // `max_in_flight` calls per client at once; 0: no bound.
  explicit ClientLimits(size_t max_in_flight) : max_in_flight_(max_in_flight) {}

  ClientLimits(const ClientLimits&) = delete;
  ClientLimits& operator=(const ClientLimits&) = delete;

  // One admitted call; false if the client was over its bound. The count is
  // given back when the slot goes away.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept
        : limits_(other.limits_), client_(std::move(other.client_)), admitted_(other.admitted_) {
      other.limits_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (limits_ != nullptr) limits_->Leave(client_);
    }
    explicit operator bool() const { return admitted_; }

   private:
    friend class ClientLimits;
    Slot(ClientLimits* limits, std::string client, bool admitted)
        : limits_(limits), client_(std::move(client)), admitted_(admitted) {}

    ClientLimits* limits_ = nullptr;  // null: nothing to give back
    std::string client_;
    bool admitted_ = true;
  };

  // Admits a call from the client `ctx` belongs to (null: an in-process
  // caller, always admitted); `identity` is its PeerIdentity (util/tls.h),
  // which the caller has looked up already.
  Slot Enter(const grpc::ServerContext* ctx, const std::string& identity);

 private:
  void Leave(const std::string& client);

  const size_t max_in_flight_;
  std::mutex mu_;
  std::unordered_map<std::string, size_t> in_flight_;  // clients with calls in progress
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_CLIENT_LIMITS_H_
