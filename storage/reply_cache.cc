#include "storage/reply_cache.h"

#include <algorithm>

namespace dfuse::storage {

ReplyCache::ReplyCache(size_t max_calls_per_client, size_t max_clients)
    : max_calls_per_client_(std::max<size_t>(max_calls_per_client, 1)),
      max_clients_(std::max<size_t>(max_clients, 1)) {}

ReplyCache::Outcome ReplyCache::Run(Id id, int rpc, uint64_t fingerprint,
                                    const std::function<std::string()>& execute,
                                    std::string* reply) {
  std::unique_lock<std::mutex> l(mu_);
  Client* client;
  for (;;) {
    // Touched again after every wait: the client may have been evicted.
    client = TouchLocked(id.client_id);
    auto it = client->calls.find(id.seq);
    if (it == client->calls.end()) break;
    const std::shared_ptr<Call> call = it->second;
    if (call->rpc != rpc || call->fingerprint != fingerprint) return Outcome::kMismatch;
    run_ended_.wait(l, [&] { return !call->running; });
    if (!call->abandoned) {
      *reply = call->reply;
      return Outcome::kReplayed;
    }
    // Its run threw and the id was forgotten: look again, and maybe run it.
  }

  auto call = std::make_shared<Call>(rpc, fingerprint);
  client->calls.emplace(id.seq, call);
  client->order.push_back(id.seq);
  calls_++;
  while (client->calls.size() > max_calls_per_client_) {
    // A call evicted while it runs still ends normally: its waiters hold it.
    client->calls.erase(client->order.front());
    client->order.pop_front();
    calls_--;
  }

  l.unlock();
  std::string result;
  try {
    result = execute();
  } catch (...) {
    l.lock();
    call->running = false;
    call->abandoned = true;
    ForgetLocked(id.client_id, id.seq, call.get());
    run_ended_.notify_all();
    throw;
  }
  l.lock();
  call->reply = result;
  call->running = false;
  run_ended_.notify_all();
  *reply = std::move(result);
  return Outcome::kExecuted;
}

size_t ReplyCache::clients() const {
  std::lock_guard<std::mutex> l(mu_);
  return clients_.size();
}

size_t ReplyCache::calls() const {
  std::lock_guard<std::mutex> l(mu_);
  return calls_;
}

ReplyCache::Client* ReplyCache::TouchLocked(uint64_t client_id) {
  if (auto it = clients_.find(client_id); it != clients_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return &it->second;
  }
  if (clients_.size() >= max_clients_) {
    auto victim = clients_.find(lru_.back());
    calls_ -= victim->second.calls.size();
    clients_.erase(victim);
    lru_.pop_back();
  }
  lru_.push_front(client_id);
  Client& client = clients_[client_id];  // references survive rehashing
  client.lru = lru_.begin();
  return &client;
}

void ReplyCache::ForgetLocked(uint64_t client_id, uint64_t seq, const Call* call) {
  auto c = clients_.find(client_id);
  if (c == clients_.end()) return;
  auto it = c->second.calls.find(seq);
  // Evicted meanwhile, and maybe claimed again by a retry: not ours.
  if (it == c->second.calls.end() || it->second.get() != call) return;
  c->second.calls.erase(it);
  calls_--;
  auto& order = c->second.order;
  if (auto pos = std::find(order.begin(), order.end(), seq); pos != order.end()) order.erase(pos);
}

}  // namespace dfuse::storage
