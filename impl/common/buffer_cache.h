// The client daemon's userspace buffer cache (ARCHITECTURE.md section 8).
//
// A fixed-size, page-granular, write-back cache of file data keyed by GFID.
// Every page records which of its bytes are known (their content is what
// storage holds, or newer) and which are dirty (newer than storage). Partial
// page writes therefore never need a read-modify-write round trip; a read of
// a page with unknown bytes fetches the page and keeps the local bytes.
//
// Reads of missing pages are batched into one read RPC per call (plus
// readahead for sequential access); contiguous dirty pages are coalesced into
// one batched write RPC. Dirty data is written back on Flush (fsync, close,
// before a lease is given up), by the background flusher, and when dirty data
// exceeds its share of the cache.
//
// The cache also tracks each file's storage version (mtime, size). A version
// it did not cause itself means another node changed the file, and the
// clean cached data is dropped.
#ifndef DFUSE_IMPL_COMMON_BUFFER_CACHE_H_
#define DFUSE_IMPL_COMMON_BUFFER_CACHE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "impl/common/range_set.h"
#include "util/stats.h"

namespace dfuse {

inline constexpr uint32_t kPageSize = 4096;

// What storage said a durable write-back left a file as
// (WriteReply.handoff): a serialized proto::Handoff and storage's proof of
// it, which a lease holder hands over to the file's next holders. Empty
// when storage said nothing.
struct ProvenHandoff {
  std::string handoff;
  std::string proof;
};

// Where the cache reads from and writes back to; the storage service in the
// daemon, a fake in unit tests.
class CacheBackend {
 public:
  struct Extent {
    uint64_t offset;
    uint64_t length;
  };
  struct Chunk {
    uint64_t offset;
    std::string data;
  };
  // What a write-back call carries besides its chunks.
  struct WriteExtras {
    std::optional<int64_t> mtime_ns;  // set after the chunks: the writer's kernel keeps it
    bool durable = false;             // on stable storage before the call returns
  };
  // What storage answered a write-back call.
  struct WriteResult {
    uint64_t file_size = 0;
    int64_t mtime_ns = 0;  // 0 if storage did not say
    ProvenHandoff after;   // a durable call's, if storage said
  };
  virtual ~CacheBackend() = default;
  // Fills data[i] with extent i, shorter at end of file. Returns an errno.
  virtual int ReadExtents(uint64_t gfid, const std::vector<Extent>& extents,
                          std::vector<std::string>* data, uint64_t* file_size) = 0;
  // Writes every chunk (there may be none) and the extras in one call.
  // Returns an errno.
  virtual int WriteChunks(uint64_t gfid, std::vector<Chunk> chunks, const WriteExtras& extras,
                          WriteResult* result) = 0;
  // The cache holds nothing of a forgotten file any more (BufferCache::
  // Forget): it will not write the file back again.
  virtual void Dropped(uint64_t /*gfid*/) {}
};

struct BufferCacheOptions {
  uint64_t capacity_bytes = 256ull << 20;
  uint64_t max_write_batch_bytes = 8ull << 20;
  uint64_t max_readahead_bytes = 1ull << 20;
  // Writers flush synchronously once dirty data exceeds this share of the
  // cache; the background flusher starts at half of it.
  double dirty_limit_ratio = 0.5;
  // The background flusher writes back data that has been dirty this long.
  std::chrono::milliseconds writeback_delay{1000};
  bool background_flusher = true;
};

class BufferCache {
 public:
  BufferCache(const BufferCacheOptions& options, CacheBackend* backend, StatsRegistry* stats);
  ~BufferCache();
  BufferCache(const BufferCache&) = delete;
  BufferCache& operator=(const BufferCache&) = delete;

  // Stops the background flusher; write-back happens only when asked
  // from then on. Idempotent; the destructor calls it.
  void StopFlusher();

  // Reads up to `size` bytes at `offset` into *out, stopping at end of file.
  int Read(uint64_t gfid, uint64_t offset, size_t size, std::string* out);
  // Caches a write as dirty data. May flush (throttle) when dirty data is high.
  int Write(uint64_t gfid, uint64_t offset, const char* data, size_t size);
  // Writes back every byte of the file that was dirty when the call began,
  // and the mtime kept for it.
  int Flush(uint64_t gfid);
  // Flush, with the last write-back call also putting the file on stable
  // storage (one round trip for fsync and for a revoke). *durable says
  // whether a call did: false when there was nothing to write back, and
  // the caller must then ask storage for durability itself;
  // *bytes_written (optional) says how many bytes were written back;
  // *after (optional) what storage said the durable call left the file as.
  int FlushDurable(uint64_t gfid, bool* durable, uint64_t* bytes_written = nullptr,
                   ProvenHandoff* after = nullptr);
  // A durable call with no data, after any flush of the file on its way:
  // for storage's hand-off (*after) when a WRITE holder's revoke had
  // nothing to write back. Returns an errno.
  int SyncForHandoff(uint64_t gfid, ProvenHandoff* after);
  // The kernel's mtime for the file, set on storage after the data of every
  // later write-back of the file, in the same call, rather than in a call
  // of its own (sent alone once when no data is left to carry it). The
  // kernel writes a file's times back without waiting for its page writes,
  // so data older than the times can arrive after them. Kept like dirty
  // data until it has reached storage.
  void KeepTimes(uint64_t gfid, int64_t mtime_ns);
  // The kernel no longer owns the file's mtime: an explicit time replaced
  // it, or its lease went below WRITE.
  void DropTimes(uint64_t gfid);
  int FlushAll();
  // Gives up the file's dirty data (its write-back failed for good): drops
  // it and latches EIO for TakeWriteError.
  void DiscardDirty(uint64_t gfid);
  // The error of dirty data of gfid that was lost since the last call (0 if
  // none), as the kernel's errseq does for fsync: reported once.
  int TakeWriteError(uint64_t gfid);
  // Drops clean data of the file (dirty bytes stay).
  void Invalidate(uint64_t gfid);
  // The file is now `size` bytes long: drops data beyond it.
  void Truncate(uint64_t gfid, uint64_t size);
  // Records the file's storage version. `own` says this node caused it (a
  // reply to its own change); otherwise a version change drops clean data.
  // Returns true for a version change that is not `own`: another node
  // changed the file since this node last knew its version.
  bool ObserveVersion(uint64_t gfid, uint64_t size, int64_t mtime_ns, bool own);
  // The file's size as this node sees it: storage size, extended by local
  // dirty data. Returns `storage_size` unchanged when the cache has no data.
  uint64_t LocalSize(uint64_t gfid, uint64_t storage_size);
  // The kernel forgot the file: write back its dirty data and drop it, in
  // the background.
  void Forget(uint64_t gfid);
  // A forgotten file was looked up again before the flusher dropped it.
  void Remember(uint64_t gfid);

  uint64_t cached_bytes() const;
  uint64_t dirty_bytes() const;

 private:
  struct Page;
  struct FileState;
  using FilePtr = std::shared_ptr<FileState>;

  FilePtr GetFile(uint64_t gfid, bool create);  // requires mu_
  Page* GetOrCreatePage(FileState* f, uint64_t index);  // requires mu_
  void DropPage(FileState* f, uint64_t index);  // requires mu_
  void DropClean(FileState* f);  // requires mu_
  void EvictIfNeeded();  // requires mu_
  void Touch(Page* p);  // requires mu_
  void RecomputeDirtyEnd(FileState* f);  // requires mu_
  int ReadOnce(uint64_t gfid, uint64_t offset, size_t size, std::string* out);
  int FlushFile(const FilePtr& f, bool durable, bool* made_durable,
                uint64_t* bytes_written = nullptr, ProvenHandoff* after = nullptr);
  void ThrottleWriters();
  void FlusherLoop();
  uint64_t LogicalSize(const FileState& f) const;  // requires mu_
  // Kept times that have not reached storage yet.
  static bool TimesPending(const FileState& f);  // requires mu_

  const BufferCacheOptions options_;
  CacheBackend* const backend_;
  const uint64_t capacity_pages_;
  const uint64_t dirty_limit_pages_;

  mutable std::mutex mu_;
  std::unordered_map<uint64_t, FilePtr> files_;
  std::list<Page*> lru_;  // front = most recently used
  uint64_t total_pages_ = 0;
  uint64_t dirty_pages_ = 0;

  std::condition_variable flusher_cv_;
  bool stopping_ = false;
  std::thread flusher_;

  Counter* hits_;
  Counter* misses_;
  Counter* readahead_pages_;
  Counter* read_rpcs_;
  Counter* write_rpcs_;
  Counter* handoff_syncs_;
  Counter* bytes_flushed_;
  Counter* evictions_;
  Counter* remote_invalidations_;
  Counter* throttled_writes_;
  Counter* discarded_dirty_;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_BUFFER_CACHE_H_
