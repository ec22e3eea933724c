// Process-wide counters and latency summaries, dumped as JSON.
#ifndef DFUSE_UTIL_STATS_H_
#define DFUSE_UTIL_STATS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace dfuse {

class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Count, sum, max and a log2 histogram of latencies in microseconds; cheap
// enough for every request.
class Latency {
 public:
  static constexpr int kBuckets = 32;
  void Record(std::chrono::nanoseconds d);
  nlohmann::json ToJson() const;

 private:
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
  std::atomic<uint64_t> max_ns_{0};
  std::atomic<uint64_t> buckets_[kBuckets] = {};
};

// Records the time from construction to destruction into a Latency.
class ScopedLatency {
 public:
  explicit ScopedLatency(Latency* l) : l_(l), start_(std::chrono::steady_clock::now()) {}
  ~ScopedLatency() { l_->Record(std::chrono::steady_clock::now() - start_); }
  ScopedLatency(const ScopedLatency&) = delete;
  ScopedLatency& operator=(const ScopedLatency&) = delete;

 private:
  Latency* l_;
  std::chrono::steady_clock::time_point start_;
};

// What a component is doing right now (its queues, who waits for what), for
// a stats dump taken while something seems stuck. Called from the dumping
// thread; it must not block on the component's locks for long (LockForProbe).
using StateProbe = std::function<nlohmann::json()>;

// Named metrics; pointers returned stay valid for the registry's lifetime.
class StatsRegistry {
 public:
  Counter* GetCounter(const std::string& name);
  Latency* GetLatency(const std::string& name);
  // ToJson's "state" then has `name`: probe(). The owner removes it before
  // whatever the probe reads goes away; RemoveProbe waits for a probe that
  // is running.
  void SetProbe(const std::string& name, StateProbe probe);
  void RemoveProbe(const std::string& name);
  nlohmann::json ToJson() const;
  // Writes the JSON atomically (temp file + rename). Returns false on error.
  bool DumpToFile(const std::string& path) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Counter>> counters_;
  std::map<std::string, std::unique_ptr<Latency>> latencies_;
  // Apart from mu_: a probe may take a while, and counters are made meanwhile.
  mutable std::mutex probes_mu_;
  std::map<std::string, StateProbe> probes_;
};

// Takes `mu` for a StateProbe, trying for up to `patience`: a component
// that is stuck may be stuck holding it, and the dump must still be written
// (the probe then reports the lock as held, which says something too).
std::unique_lock<std::mutex> LockForProbe(
    std::mutex& mu, std::chrono::milliseconds patience = std::chrono::milliseconds(500));

}  // namespace dfuse

#endif  // DFUSE_UTIL_STATS_H_
