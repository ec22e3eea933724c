#include "storage/client_limits.h"

namespace dfuse::storage {

ClientLimits::Slot ClientLimits::Enter(const grpc::ServerContext* ctx,
                                       const std::string& identity) {
  if (ctx == nullptr || max_in_flight_ == 0) return Slot();
  std::string client = identity.empty() ? ctx->peer() : "cn:" + identity;
  std::lock_guard<std::mutex> l(mu_);
  size_t& calls = in_flight_[client];
  if (calls >= max_in_flight_) return Slot(nullptr, "", false);
  calls++;
  return Slot(this, std::move(client), true);
}

void ClientLimits::Leave(const std::string& client) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = in_flight_.find(client);
  if (it != in_flight_.end() && --it->second == 0) in_flight_.erase(it);
}

}  // namespace dfuse::storage
