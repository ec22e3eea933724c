// Microbenchmarks of the userspace buffer cache (impl/common/buffer_cache.h)
// over an in-memory backend that only counts calls: what one cached 4 KiB
// write, a cache-hit read and a coalesced flush cost in the daemon itself.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "impl/common/buffer_cache.h"
#include "util/stats.h"

namespace dfuse {
namespace {

constexpr uint64_t kFile = (uint64_t{1} << 48) | 7;

// Keeps nothing: reads return zeros up to a fixed size, writes are counted.
class NullBackend : public CacheBackend {
 public:
  int ReadExtents(uint64_t, const std::vector<Extent>& extents, std::vector<std::string>* data,
                  uint64_t* file_size) override {
    for (const Extent& e : extents) data->emplace_back(e.length, '\0');
    *file_size = kFileSize;
    return 0;
  }
  int WriteChunks(uint64_t, std::vector<Chunk> chunks, const WriteExtras&,
                  WriteResult* result) override {
    calls++;
    for (const Chunk& c : chunks) bytes += c.data.size();
    result->file_size = kFileSize;
    result->mtime_ns = 1;
    return 0;
  }
  static constexpr uint64_t kFileSize = 64ull << 20;
  uint64_t calls = 0;
  uint64_t bytes = 0;
};

BufferCacheOptions Options() {
  BufferCacheOptions o;
  o.capacity_bytes = 256ull << 20;
  o.background_flusher = false;  // flushes happen only where measured
  return o;
}

// A cache over a NullBackend, and a page of data to write.
struct Bench {
  // Writes pages [0, n) of kFile (dirty until flushed).
  void WritePages(uint64_t n) {
    for (uint64_t p = 0; p < n; p++) cache.Write(kFile, p * 4096, block.data(), block.size());
  }

  StatsRegistry stats;
  NullBackend backend;
  BufferCache cache{Options(), &backend, &stats};
  const std::string block = std::string(4096, 'x');
};

// One cached 4 KiB write at a random page of a 64 MiB file.
void BM_RandomWrite4K(benchmark::State& state) {
  Bench b;
  std::mt19937_64 rng(1);
  for (auto _ : state) {
    const uint64_t page = rng() % (NullBackend::kFileSize / 4096);
    benchmark::DoNotOptimize(b.cache.Write(kFile, page * 4096, b.block.data(), b.block.size()));
    if (b.cache.dirty_bytes() > (64ull << 20)) {
      state.PauseTiming();
      b.cache.Flush(kFile);
      state.ResumeTiming();
    }
  }
  state.SetBytesProcessed(state.iterations() * 4096);
}
BENCHMARK(BM_RandomWrite4K);

// A 4 KiB read served from the cache.
void BM_ReadHit4K(benchmark::State& state) {
  Bench b;
  const uint64_t pages = 4096;  // 16 MiB, all cached
  b.WritePages(pages);
  b.cache.Flush(kFile);
  std::mt19937_64 rng(2);
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(b.cache.Read(kFile, (rng() % pages) * 4096, 4096, &out));
  }
  state.SetBytesProcessed(state.iterations() * 4096);
}
BENCHMARK(BM_ReadHit4K);

// Flushing N contiguous dirty pages: one batched backend call.
void BM_FlushContiguous(benchmark::State& state) {
  Bench b;
  const auto pages = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    b.WritePages(pages);
    state.ResumeTiming();
    benchmark::DoNotOptimize(b.cache.Flush(kFile));
  }
  state.counters["backend_calls_per_flush"] =
      static_cast<double>(b.backend.calls) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(pages) * 4096);
}
BENCHMARK(BM_FlushContiguous)->Arg(16)->Arg(256);

}  // namespace
}  // namespace dfuse
