#include "util/stats.h"

#include <bit>
#include <cstdio>
#include <fstream>
#include <thread>

namespace dfuse {

void Latency::Record(std::chrono::nanoseconds d) {
  const uint64_t ns = d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0;
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  uint64_t prev = max_ns_.load(std::memory_order_relaxed);
  while (ns > prev && !max_ns_.compare_exchange_weak(prev, ns, std::memory_order_relaxed)) {
  }
  const uint64_t us = ns / 1000;
  int b = us == 0 ? 0 : std::bit_width(us);
  if (b >= kBuckets) b = kBuckets - 1;
  buckets_[b].fetch_add(1, std::memory_order_relaxed);
}

nlohmann::json Latency::ToJson() const {
  const uint64_t n = count_.load(std::memory_order_relaxed);
  nlohmann::json j;
  j["count"] = n;
  j["mean_us"] = n ? static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / n / 1000.0 : 0.0;
  j["max_us"] = static_cast<double>(max_ns_.load(std::memory_order_relaxed)) / 1000.0;
  // Bucket i holds latencies in [2^(i-1), 2^i) microseconds; keyed by upper bound.
  nlohmann::json hist = nlohmann::json::object();
  for (int i = 0; i < kBuckets; i++) {
    const uint64_t c = buckets_[i].load(std::memory_order_relaxed);
    if (c) hist["lt_" + std::to_string(uint64_t{1} << i) + "us"] = c;
  }
  j["histogram"] = hist;
  return j;
}

Counter* StatsRegistry::GetCounter(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& c = counters_[name];
  if (!c) c = std::make_unique<Counter>();
  return c.get();
}

Latency* StatsRegistry::GetLatency(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& c = latencies_[name];
  if (!c) c = std::make_unique<Latency>();
  return c.get();
}

void StatsRegistry::SetProbe(const std::string& name, StateProbe probe) {
  std::lock_guard<std::mutex> l(probes_mu_);
  probes_[name] = std::move(probe);
}

void StatsRegistry::RemoveProbe(const std::string& name) {
  std::lock_guard<std::mutex> l(probes_mu_);
  probes_.erase(name);
}

nlohmann::json StatsRegistry::ToJson() const {
  nlohmann::json j;
  {
    std::lock_guard<std::mutex> l(mu_);
    j["counters"] = nlohmann::json::object();
    for (const auto& [name, c] : counters_) j["counters"][name] = c->Get();
    j["latencies"] = nlohmann::json::object();
    for (const auto& [name, l] : latencies_) j["latencies"][name] = l->ToJson();
  }
  std::lock_guard<std::mutex> l(probes_mu_);
  if (!probes_.empty()) {
    j["state"] = nlohmann::json::object();
    for (const auto& [name, probe] : probes_) j["state"][name] = probe();
  }
  return j;
}

std::unique_lock<std::mutex> LockForProbe(std::mutex& mu, std::chrono::milliseconds patience) {
  std::unique_lock<std::mutex> l(mu, std::try_to_lock);
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (!l.owns_lock() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    l.try_lock();
  }
  return l;
}

bool StatsRegistry::DumpToFile(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << ToJson().dump(2) << "\n";
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace dfuse
