#include "impl/common/buffer_cache.h"

#include <gtest/gtest.h>

#include "impl/common/revoke.h"

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace dfuse {
namespace {

// An in-memory storage service that counts calls.
class FakeBackend : public CacheBackend {
 public:
  int ReadExtents(uint64_t gfid, const std::vector<Extent>& extents,
                  std::vector<std::string>* data, uint64_t* file_size) override {
    std::lock_guard<std::mutex> l(mu_);
    reads++;
    const std::string& f = files_[gfid];
    data->clear();
    for (const Extent& e : extents) {
      extents_read += 1;
      data->push_back(e.offset >= f.size() ? std::string()
                                           : f.substr(e.offset, e.length));
    }
    *file_size = f.size();
    return read_error;
  }

  int WriteChunks(uint64_t gfid, std::vector<Chunk> chunks, const WriteExtras& extras,
                  WriteResult* result) override {
    std::lock_guard<std::mutex> l(mu_);
    if (write_error) return write_error;
    writes++;
    if (extras.durable) durable_calls++;
    std::string& f = files_[gfid];
    for (const Chunk& c : chunks) {
      chunks_written++;
      if (f.size() < c.offset + c.data.size()) f.resize(c.offset + c.data.size(), '\0');
      f.replace(c.offset, c.data.size(), c.data);
    }
    result->file_size = f.size();
    // Storage sets the writer's mtime after the data.
    result->mtime_ns = mtime_[gfid] = extras.mtime_ns ? *extras.mtime_ns : mtime_[gfid] + 1;
    // What storage says a durable call left the file as (no proof here).
    if (extras.durable) result->after.handoff = "size " + std::to_string(f.size());
    return 0;
  }

  // Changes the file as another node would.
  void RemoteWrite(uint64_t gfid, uint64_t off, const std::string& data) {
    std::lock_guard<std::mutex> l(mu_);
    std::string& f = files_[gfid];
    if (f.size() < off + data.size()) f.resize(off + data.size(), '\0');
    f.replace(off, data.size(), data);
    ++mtime_[gfid];
  }
  void RemoteTruncate(uint64_t gfid, uint64_t size) {
    std::lock_guard<std::mutex> l(mu_);
    files_[gfid].resize(size, '\0');
    ++mtime_[gfid];
  }
  std::string Contents(uint64_t gfid) {
    std::lock_guard<std::mutex> l(mu_);
    return files_[gfid];
  }
  int64_t Mtime(uint64_t gfid) {
    std::lock_guard<std::mutex> l(mu_);
    return mtime_[gfid];
  }

  std::atomic<int> reads{0}, writes{0}, extents_read{0}, chunks_written{0}, durable_calls{0};
  int read_error = 0;
  int write_error = 0;

 private:
  std::mutex mu_;
  std::map<uint64_t, std::string> files_;
  std::map<uint64_t, int64_t> mtime_;
};

BufferCacheOptions TestOptions() {
  BufferCacheOptions o;
  o.capacity_bytes = 16 << 20;
  o.background_flusher = false;
  return o;
}

std::string Pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>(seed + i % 251);
  return s;
}

class BufferCacheTest : public ::testing::Test {
 protected:
  StatsRegistry stats_;
  FakeBackend backend_;
};

TEST_F(BufferCacheTest, WriteThenReadIsServedFromCache) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  std::string data = Pattern(3 * kPageSize, 'a');
  ASSERT_EQ(cache.Write(7, 0, data.data(), data.size()), 0);
  std::string out;
  ASSERT_EQ(cache.Read(7, 0, data.size(), &out), 0);
  EXPECT_EQ(out, data);
  EXPECT_EQ(backend_.reads, 0);
  EXPECT_EQ(backend_.writes, 0);
  EXPECT_EQ(cache.dirty_bytes(), 3 * kPageSize);
}

TEST_F(BufferCacheTest, DurableFlushIsOneCall) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  std::string data = Pattern(3 * kPageSize, 'd');
  ASSERT_EQ(cache.Write(7, 0, data.data(), data.size()), 0);
  bool durable = false;
  uint64_t bytes = 0;
  ProvenHandoff after;
  ASSERT_EQ(cache.FlushDurable(7, &durable, &bytes, &after), 0);
  EXPECT_TRUE(durable);
  EXPECT_EQ(bytes, data.size());
  EXPECT_EQ(backend_.writes, 1);
  EXPECT_EQ(backend_.durable_calls, 1);
  EXPECT_EQ(after.handoff, "size " + std::to_string(data.size())) << "what storage said of it";
  // Nothing left to write: no call, and the caller must fsync itself.
  ASSERT_EQ(cache.FlushDurable(7, &durable, nullptr, &after), 0);
  EXPECT_FALSE(durable);
  EXPECT_EQ(after.handoff, "") << "storage said nothing this time";
  EXPECT_EQ(backend_.writes, 1);
}

// A WRITE holder's revoke with nothing left to write back still gets
// storage's hand-off for the next holders, from one call without data; a
// revoke that hands nothing over makes no call.
TEST_F(BufferCacheTest, ARevokeWithNothingToWriteBackAsksForTheHandoff) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  Counter durable_flushes;
  ASSERT_EQ(cache.Write(7, 0, "abc", 3), 0);
  ProvenHandoff after;
  ASSERT_EQ(WriteBackForRevoke(&cache, 7, lease::LeaseMode::kRead, &durable_flushes, &after), 0);
  EXPECT_EQ(backend_.writes, 1) << "the write-back's durable call hands off";
  EXPECT_EQ(after.handoff, "size 3");
  ASSERT_EQ(WriteBackForRevoke(&cache, 7, lease::LeaseMode::kNone, &durable_flushes, &after), 0);
  EXPECT_EQ(backend_.writes, 2);
  EXPECT_EQ(backend_.chunks_written, 1) << "the second call carries no data";
  EXPECT_EQ(backend_.durable_calls, 2);
  EXPECT_EQ(after.handoff, "size 3");
  EXPECT_EQ(durable_flushes.Get(), 1u) << "counts write-backs only";
  EXPECT_EQ(stats_.GetCounter("cache.handoff_syncs")->Get(), 1u);
  // A file this node never cached is asked for too.
  ASSERT_EQ(WriteBackForRevoke(&cache, 8, lease::LeaseMode::kNone, &durable_flushes, &after), 0);
  EXPECT_EQ(backend_.writes, 3);
  // Without a hand-off to take (a READ lease given up), no call.
  ASSERT_EQ(WriteBackForRevoke(&cache, 7, lease::LeaseMode::kNone, &durable_flushes), 0);
  EXPECT_EQ(backend_.writes, 3);
  // A failed call costs no data and hands nothing over.
  backend_.write_error = EIO;
  ASSERT_EQ(WriteBackForRevoke(&cache, 7, lease::LeaseMode::kNone, &durable_flushes, &after), 0);
  EXPECT_EQ(after.handoff, "");
}

TEST_F(BufferCacheTest, OnlyTheLastBatchOfADurableFlushIsDurable) {
  BufferCacheOptions o = TestOptions();
  o.max_write_batch_bytes = 2 * kPageSize;
  BufferCache cache(o, &backend_, &stats_);
  const std::string page(kPageSize, 'x');
  for (int i = 0; i < 5; i++) {  // five separate full pages: three batches
    ASSERT_EQ(cache.Write(7, 2 * i * kPageSize, page.data(), page.size()), 0);
  }
  bool durable = false;
  ASSERT_EQ(cache.FlushDurable(7, &durable), 0);
  EXPECT_TRUE(durable);
  EXPECT_EQ(backend_.writes, 3);
  EXPECT_EQ(backend_.durable_calls, 1);
  EXPECT_EQ(cache.dirty_bytes(), 0u);
}

TEST_F(BufferCacheTest, ADurableFlushSyncsWhatAnEarlierFlushSentWithoutSyncing) {
  // The background flusher (or a close) may send the data just before a
  // revoke, which must still make it durable before it acks.
  BufferCache cache(TestOptions(), &backend_, &stats_);
  ASSERT_EQ(cache.Write(7, 0, "abc", 3), 0);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.durable_calls, 0);
  bool durable = false;
  ASSERT_EQ(cache.FlushDurable(7, &durable), 0);
  EXPECT_TRUE(durable);
  EXPECT_EQ(backend_.writes, 2);
  EXPECT_EQ(backend_.chunks_written, 1) << "the second call carries no data";
  EXPECT_EQ(backend_.durable_calls, 1);
  ASSERT_EQ(cache.FlushDurable(7, &durable), 0);
  EXPECT_FALSE(durable) << "nothing left to make durable";
  EXPECT_EQ(backend_.writes, 2);
}

TEST_F(BufferCacheTest, KeptTimesGoWithTheDataAndSurviveAFailedFlush) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  ASSERT_EQ(cache.Write(7, 0, "abc", 3), 0);
  cache.KeepTimes(7, 222);
  backend_.write_error = EIO;
  EXPECT_EQ(cache.Flush(7), EIO);
  backend_.write_error = 0;
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 1);  // data and times in one call
  EXPECT_EQ(backend_.Mtime(7), 222);
  EXPECT_EQ(backend_.Contents(7), "abc");
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 1) << "the times were sent once";
}

TEST_F(BufferCacheTest, DiscardedDataTakesItsKeptTimesAlong) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  ASSERT_EQ(cache.Write(7, 0, "abc", 3), 0);
  cache.KeepTimes(7, 333);
  cache.DiscardDirty(7);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 0);
  EXPECT_NE(backend_.Mtime(7), 333);
}

TEST_F(BufferCacheTest, TimesThatCameBeforeTheirDataGoAfterIt) {
  // The kernel sends a file's times without waiting for its page writes:
  // they can arrive first, and must still be storage's last word. Only
  // what the clock allows is asserted: a loaded machine may be slow.
  using Clock = std::chrono::steady_clock;
  BufferCacheOptions o = TestOptions();
  o.background_flusher = true;
  o.writeback_delay = std::chrono::milliseconds(1000);
  BufferCache cache(o, &backend_, &stats_);
  const auto start = Clock::now();
  cache.KeepTimes(7, 444);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int early = backend_.writes;
  if (Clock::now() - start < o.writeback_delay) {
    EXPECT_EQ(early, 0) << "kept times wait out the write-back delay like data";
  }
  ASSERT_EQ(cache.Write(7, 0, "late data", 9), 0);
  const bool in_time = Clock::now() - start < o.writeback_delay;
  for (int i = 0; i < 500 && (backend_.Contents(7) != "late data" || backend_.Mtime(7) != 444);
       i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(backend_.Contents(7), "late data");
  EXPECT_EQ(backend_.Mtime(7), 444);
  if (in_time) {
    EXPECT_EQ(backend_.writes, 1) << "the data and its times in one call";
  }
}

TEST_F(BufferCacheTest, DataThatArrivesAfterItsTimesStillEndsWithThem) {
  // The kernel's times came, were sent with the data then here, and more
  // of the data the times cover arrived only afterwards.
  BufferCache cache(TestOptions(), &backend_, &stats_);
  cache.KeepTimes(7, 888);
  ASSERT_EQ(cache.Write(7, 0, "a", 1), 0);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.Mtime(7), 888);
  ASSERT_EQ(cache.Write(7, 1, "b", 1), 0);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 2);
  EXPECT_EQ(backend_.Mtime(7), 888) << "the late data's write set a time of its own";
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 2) << "times already on storage are not sent alone again";
  // Once the kernel owns the times no more (a revoke), the data's own write time stands.
  cache.DropTimes(7);
  ASSERT_EQ(cache.Write(7, 2, "c", 1), 0);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.Mtime(7), 889);
  EXPECT_EQ(backend_.Contents(7), "abc");
}

TEST_F(BufferCacheTest, TimesWithNoDataGoAloneAndANewerExplicitTimeDropsThem) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  cache.KeepTimes(7, 555);
  bool durable = false;
  ASSERT_EQ(cache.FlushDurable(7, &durable), 0);
  EXPECT_TRUE(durable);
  EXPECT_EQ(backend_.writes, 1);
  EXPECT_EQ(backend_.Mtime(7), 555);
  cache.KeepTimes(7, 666);
  cache.DropTimes(7);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 1);
  EXPECT_EQ(backend_.Mtime(7), 555);
}

TEST_F(BufferCacheTest, TimesOfAFileThatIsGoneAreDroppedWithoutAnError) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  cache.KeepTimes(7, 777);
  backend_.write_error = ENOENT;
  EXPECT_EQ(cache.Flush(7), 0) << "no data was lost";
  backend_.write_error = 0;
  EXPECT_EQ(cache.TakeWriteError(7), 0);
  ASSERT_EQ(cache.Flush(7), 0);
  EXPECT_EQ(backend_.writes, 0) << "the times were dropped, not kept for a retry";
}

TEST_F(BufferCacheTest, PartialPageWriteMergesWithStorageOnRead) {
  backend_.RemoteWrite(7, 0, std::string(kPageSize, 'S'));
  BufferCache cache(TestOptions(), &backend_, &stats_);
  ASSERT_EQ(cache.Write(7, 100, "LOCAL", 5), 0);
  EXPECT_EQ(backend_.reads, 0) << "a partial-page write must not read first";
  std::string out;
  ASSERT_EQ(cache.Read(7, 90, 20, &out), 0);
  EXPECT_EQ(out, std::string(10, 'S') + "LOCAL" + std::string(5, 'S'));
  ASSERT_EQ(cache.Flush(7), 0);
  std::string expect(kPageSize, 'S');
  expect.replace(100, 5, "LOCAL");
  EXPECT_EQ(backend_.Contents(7), expect);
}

TEST_F(BufferCacheTest, FlushCoalescesContiguousPagesIntoOneChunk) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  for (int i = 0; i < 16; i++) {
    std::string page = Pattern(kPageSize, static_cast<char>(i));
    ASSERT_EQ(cache.Write(9, i * kPageSize, page.data(), page.size()), 0);
  }
  std::string far = "tail";
  ASSERT_EQ(cache.Write(9, 100 * kPageSize, far.data(), far.size()), 0);
  ASSERT_EQ(cache.Flush(9), 0);
  EXPECT_EQ(backend_.writes, 1);
  EXPECT_EQ(backend_.chunks_written, 2);  // pages 0-15, then the far tail
  EXPECT_EQ(cache.dirty_bytes(), 0u);
  EXPECT_EQ(backend_.Contents(9).size(), 100 * kPageSize + 4);
}

TEST_F(BufferCacheTest, ReadBatchesMissingRunsIntoOneCall) {
  backend_.RemoteWrite(3, 0, Pattern(8 * kPageSize, 'x'));
  BufferCache cache(TestOptions(), &backend_, &stats_);
  std::string out;
  ASSERT_EQ(cache.Read(3, 2 * kPageSize, kPageSize, &out), 0);  // caches page 2
  ASSERT_EQ(cache.Read(3, 5 * kPageSize, kPageSize, &out), 0);  // caches page 5
  backend_.reads = 0;
  backend_.extents_read = 0;
  ASSERT_EQ(cache.Read(3, 0, 8 * kPageSize, &out), 0);
  EXPECT_EQ(out, Pattern(8 * kPageSize, 'x'));
  EXPECT_EQ(backend_.reads, 1);
  EXPECT_EQ(backend_.extents_read, 3);  // pages 0-1, 3-4, 6-7
}

TEST_F(BufferCacheTest, SequentialReadsTriggerReadahead) {
  backend_.RemoteWrite(4, 0, Pattern(4 << 20, 'r'));
  BufferCache cache(TestOptions(), &backend_, &stats_);
  std::string out;
  for (uint64_t off = 0; off < (4 << 20); off += 128 << 10) {
    ASSERT_EQ(cache.Read(4, off, 128 << 10, &out), 0);
    ASSERT_EQ(out, Pattern(4 << 20, 'r').substr(off, 128 << 10));
  }
  EXPECT_LT(backend_.reads, 32) << "readahead should need fewer calls than reads";
  EXPECT_GT(stats_.GetCounter("cache.readahead_pages")->Get(), 0u);
}

TEST_F(BufferCacheTest, ReadStopsAtEndOfFileIncludingLocalExtension) {
  backend_.RemoteWrite(5, 0, "0123456789");
  BufferCache cache(TestOptions(), &backend_, &stats_);
  std::string out;
  ASSERT_EQ(cache.Read(5, 5, 100, &out), 0);
  EXPECT_EQ(out, "56789");
  ASSERT_EQ(cache.Write(5, 20, "XY", 2), 0);  // leaves a hole 10..20
  ASSERT_EQ(cache.Read(5, 8, 100, &out), 0);
  EXPECT_EQ(out, std::string("89") + std::string(10, '\0') + "XY");
  EXPECT_EQ(cache.LocalSize(5, 10), 22u);
}

TEST_F(BufferCacheTest, TruncateDropsDataBeyondTheEnd) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  std::string data = Pattern(3 * kPageSize, 't');
  ASSERT_EQ(cache.Write(6, 0, data.data(), data.size()), 0);
  cache.Truncate(6, kPageSize + 10);
  ASSERT_EQ(cache.Flush(6), 0);
  EXPECT_EQ(backend_.Contents(6), data.substr(0, kPageSize + 10));
  // Growing again exposes zeros, not the old bytes.
  ASSERT_EQ(cache.Write(6, 2 * kPageSize, "Z", 1), 0);
  std::string out;
  ASSERT_EQ(cache.Read(6, kPageSize, kPageSize + 1, &out), 0);
  EXPECT_EQ(out, data.substr(kPageSize, 10) + std::string(kPageSize - 10, '\0') + "Z");
}

TEST_F(BufferCacheTest, RemoteVersionChangeDropsCleanDataButKeepsDirty) {
  backend_.RemoteWrite(8, 0, std::string(2 * kPageSize, 'o'));
  BufferCache cache(TestOptions(), &backend_, &stats_);
  cache.ObserveVersion(8, 2 * kPageSize, backend_.Mtime(8), false);
  std::string out;
  ASSERT_EQ(cache.Read(8, 0, 2 * kPageSize, &out), 0);
  ASSERT_EQ(cache.Write(8, kPageSize, "mine", 4), 0);
  backend_.RemoteWrite(8, 0, std::string(8, 'n'));
  // Our own version observation does not drop anything ...
  cache.ObserveVersion(8, 2 * kPageSize, backend_.Mtime(8), true);
  ASSERT_EQ(cache.Read(8, 0, 8, &out), 0);
  EXPECT_EQ(out, std::string(8, 'o'));
  // ... but a remote change does, and the local dirty bytes survive it.
  backend_.RemoteWrite(8, 0, std::string(8, 'm'));
  cache.ObserveVersion(8, 2 * kPageSize, backend_.Mtime(8), false);
  ASSERT_EQ(cache.Read(8, 0, 8, &out), 0);
  EXPECT_EQ(out, std::string(8, 'm'));
  ASSERT_EQ(cache.Read(8, kPageSize, 6, &out), 0);
  EXPECT_EQ(out, "mineoo");
  EXPECT_EQ(stats_.GetCounter("cache.remote_invalidations")->Get(), 1u);
}

TEST_F(BufferCacheTest, OwnFlushDoesNotLookLikeARemoteChange) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  cache.ObserveVersion(2, 0, backend_.Mtime(2), false);
  ASSERT_EQ(cache.Write(2, 0, "abc", 3), 0);
  ASSERT_EQ(cache.Flush(2), 0);
  cache.ObserveVersion(2, 3, backend_.Mtime(2), false);
  EXPECT_EQ(stats_.GetCounter("cache.remote_invalidations")->Get(), 0u);
}

TEST_F(BufferCacheTest, EvictionKeepsTheCacheWithinCapacity) {
  backend_.RemoteWrite(1, 0, Pattern(64 << 20, 'e'));
  BufferCacheOptions o = TestOptions();
  o.capacity_bytes = 8 << 20;
  BufferCache cache(o, &backend_, &stats_);
  std::string out;
  for (uint64_t off = 0; off < (64 << 20); off += 1 << 20) {
    ASSERT_EQ(cache.Read(1, off, 1 << 20, &out), 0);
    ASSERT_EQ(out.size(), 1u << 20);
  }
  EXPECT_LE(cache.cached_bytes(), 8u << 20);
  EXPECT_GT(stats_.GetCounter("cache.evictions")->Get(), 0u);
}

TEST_F(BufferCacheTest, WritersAreThrottledByTheDirtyLimit) {
  BufferCacheOptions o = TestOptions();
  o.capacity_bytes = 8 << 20;
  BufferCache cache(o, &backend_, &stats_);
  std::string block = Pattern(1 << 20, 'w');
  for (int i = 0; i < 32; i++) ASSERT_EQ(cache.Write(1, uint64_t(i) << 20, block.data(), block.size()), 0);
  EXPECT_LE(cache.dirty_bytes(), 4u << 20);
  EXPECT_GT(backend_.writes, 0);
  ASSERT_EQ(cache.Flush(1), 0);
  EXPECT_EQ(backend_.Contents(1).size(), 32u << 20);
}

TEST_F(BufferCacheTest, FencedWriteDropsDataAndReportsEio) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  ASSERT_EQ(cache.Write(1, 0, "lost", 4), 0);
  backend_.write_error = ESTALE;
  EXPECT_EQ(cache.Flush(1), EIO);
  EXPECT_EQ(cache.dirty_bytes(), 0u);
  EXPECT_EQ(stats_.GetCounter("cache.discarded_dirty_pages")->Get(), 1u);
}

TEST_F(BufferCacheTest, TransientWriteErrorKeepsDataDirty) {
  BufferCache cache(TestOptions(), &backend_, &stats_);
  ASSERT_EQ(cache.Write(1, 0, "kept", 4), 0);
  backend_.write_error = EIO;
  EXPECT_EQ(cache.Flush(1), EIO);
  backend_.write_error = 0;
  EXPECT_EQ(cache.Flush(1), 0);
  EXPECT_EQ(backend_.Contents(1), "kept");
}

TEST_F(BufferCacheTest, BackgroundFlusherWritesBackAndDropsForgottenFiles) {
  BufferCacheOptions o = TestOptions();
  o.background_flusher = true;
  o.writeback_delay = std::chrono::milliseconds(50);
  BufferCache cache(o, &backend_, &stats_);
  ASSERT_EQ(cache.Write(1, 0, "later", 5), 0);
  ASSERT_EQ(cache.Write(2, 0, "gone", 4), 0);
  cache.Forget(2);
  for (int i = 0; i < 100 && (backend_.Contents(1) != "later" || cache.cached_bytes() > kPageSize); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(backend_.Contents(1), "later");
  EXPECT_EQ(backend_.Contents(2), "gone");
  EXPECT_EQ(cache.cached_bytes(), kPageSize) << "file 2 dropped, file 1 still cached";
}

// A randomized model test: any sequence of writes, reads, truncates, flushes
// and invalidations reads back exactly what a plain byte string would hold,
// and after a final flush storage holds it too.
TEST_F(BufferCacheTest, RandomOperationsMatchAModel) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  BufferCacheOptions o = TestOptions();
  o.capacity_bytes = 8 << 20;  // small enough to evict
  BufferCache cache(o, &backend_, &stats_);
  std::map<uint64_t, std::string> model;
  auto rnd = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  for (int step = 0; step < 20000; step++) {
    const uint64_t gfid = 1 + rnd(4);
    std::string& m = model[gfid];
    const uint64_t max_off = 6 * kPageSize;
    switch (rnd(10)) {
      case 0: case 1: case 2: case 3: {
        const uint64_t off = rnd(max_off);
        std::string d = Pattern(1 + rnd(2 * kPageSize), static_cast<char>(step));
        ASSERT_EQ(cache.Write(gfid, off, d.data(), d.size()), 0);
        if (m.size() < off + d.size()) m.resize(off + d.size(), '\0');
        m.replace(off, d.size(), d);
        break;
      }
      case 4: case 5: case 6: {
        const uint64_t off = rnd(max_off + kPageSize);
        const uint64_t len = 1 + rnd(3 * kPageSize);
        std::string out;
        ASSERT_EQ(cache.Read(gfid, off, len, &out), 0);
        const std::string want = off >= m.size() ? "" : m.substr(off, len);
        ASSERT_EQ(out, want) << "step " << step << " read " << gfid << " @" << off << "+" << len;
        break;
      }
      case 7: {
        const uint64_t size = rnd(max_off);
        cache.Truncate(gfid, size);
        backend_.RemoteTruncate(gfid, size);  // what the client's SETATTR does
        m.resize(size, '\0');
        cache.ObserveVersion(gfid, size, backend_.Mtime(gfid), true);
        break;
      }
      case 8:
        ASSERT_EQ(cache.Flush(gfid), 0);
        break;
      case 9:
        cache.Invalidate(gfid);
        break;
    }
  }
  ASSERT_EQ(cache.FlushAll(), 0);
  for (auto& [gfid, m] : model) {
    // Storage may be longer only if a truncate raced nothing; it must match.
    EXPECT_EQ(backend_.Contents(gfid), m) << "gfid " << gfid;
  }
}

TEST_F(BufferCacheTest, ConcurrentWritersAndReadersOnSeparateFiles) {
  BufferCacheOptions o = TestOptions();
  o.capacity_bytes = 8 << 20;
  o.background_flusher = true;
  o.writeback_delay = std::chrono::milliseconds(5);
  BufferCache cache(o, &backend_, &stats_);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      const uint64_t gfid = 100 + t;
      std::string expect;
      for (int i = 0; i < 2000; i++) {
        std::string d = Pattern(700 + (i * 37) % 5000, static_cast<char>(t * 50 + i));
        const uint64_t off = (i * 4099ull) % (1 << 20);
        if (cache.Write(gfid, off, d.data(), d.size()) != 0) failures++;
        if (expect.size() < off + d.size()) expect.resize(off + d.size(), '\0');
        expect.replace(off, d.size(), d);
        std::string out;
        if (cache.Read(gfid, off, d.size(), &out) != 0 || out != d) failures++;
      }
      if (cache.Flush(gfid) != 0 || backend_.Contents(gfid) != expect) failures++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace dfuse
