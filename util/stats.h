// Process-wide counters and latency summaries, dumped as JSON.
#ifndef DFUSE_UTIL_STATS_H_
#define DFUSE_UTIL_STATS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
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

// Named metrics; pointers returned stay valid for the registry's lifetime.
class StatsRegistry {
 public:
  Counter* GetCounter(const std::string& name);
  Latency* GetLatency(const std::string& name);
  nlohmann::json ToJson() const;
  // Writes the JSON atomically (temp file + rename). Returns false on error.
  bool DumpToFile(const std::string& path) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Counter>> counters_;
  std::map<std::string, std::unique_ptr<Latency>> latencies_;
};

}  // namespace dfuse

#endif  // DFUSE_UTIL_STATS_H_
