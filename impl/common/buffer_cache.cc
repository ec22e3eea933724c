#include "impl/common/buffer_cache.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>

namespace dfuse {

struct BufferCache::Page {
  uint64_t gfid;
  uint64_t index;
  std::unique_ptr<char[]> data;
  RangeSet known;  // bytes whose content is current
  RangeSet dirty;  // subset of known not yet on storage
  uint64_t write_gen = 0;  // bumped by every write; lets a flush detect races
  std::list<Page*>::iterator lru_pos;
};

struct BufferCache::FileState {
  explicit FileState(uint64_t g) : gfid(g) {}
  const uint64_t gfid;
  std::map<uint64_t, std::unique_ptr<Page>> pages;  // by page index
  uint64_t dirty_pages = 0;
  uint64_t storage_size = 0;
  uint64_t dirty_end = 0;  // end of the furthest unflushed byte
  // A read's RPC runs unlocked. These counters tell it, once back, whether
  // its reply is stale: size_seq moves whenever storage_size is set, and
  // drop_seq whenever cached bytes are truncated or invalidated.
  uint64_t size_seq = 0;
  uint64_t drop_seq = 0;
  bool version_known = false;
  uint64_t version_size = 0;
  int64_t version_mtime = 0;
  // Since when the file has had dirty data or kept times: the write-back
  // delay counts from here.
  std::chrono::steady_clock::time_point dirty_since;
  uint64_t next_read = 0;  // sequential-read detection
  uint64_t readahead = 0;
  bool forgotten = false;
  // Dirty data of the file was lost (refused by storage, or given up by a
  // revoke that could not write it back): reported once, by the next
  // TakeWriteError.
  int write_error = 0;
  // The kernel's mtime for the file (KeepTimes): every write-back of the
  // file's data carries it, since the kernel may send data written before
  // that time after the times themselves; it goes alone once if no data
  // is left to carry it (times_sent says whether it has reached storage).
  std::optional<int64_t> mtime_ns;
  bool times_sent = false;
  // A write-back since the last durable one was not made durable: a durable
  // flush with nothing left to send still owes storage an fsync (the
  // background flusher may have just sent the data a revoke must sync).
  bool unsynced = false;
  std::mutex flush_mu;  // serializes write-back of this file; taken before mu_
};

BufferCache::BufferCache(const BufferCacheOptions& options, CacheBackend* backend,
                         StatsRegistry* stats)
    : options_(options),
      backend_(backend),
      // At least 8 MiB: one read plus its readahead must fit.
      capacity_pages_(std::max<uint64_t>(options.capacity_bytes / kPageSize, 2048)),
      dirty_limit_pages_(std::max<uint64_t>(capacity_pages_ * options.dirty_limit_ratio, 16)),
      hits_(stats->GetCounter("cache.page_hits")),
      misses_(stats->GetCounter("cache.page_misses")),
      readahead_pages_(stats->GetCounter("cache.readahead_pages")),
      read_rpcs_(stats->GetCounter("cache.read_rpcs")),
      write_rpcs_(stats->GetCounter("cache.write_rpcs")),
      handoff_syncs_(stats->GetCounter("cache.handoff_syncs")),
      bytes_flushed_(stats->GetCounter("cache.bytes_flushed")),
      evictions_(stats->GetCounter("cache.evictions")),
      remote_invalidations_(stats->GetCounter("cache.remote_invalidations")),
      throttled_writes_(stats->GetCounter("cache.throttled_writes")),
      discarded_dirty_(stats->GetCounter("cache.discarded_dirty_pages")) {
  if (options_.background_flusher) flusher_ = std::thread([this] { FlusherLoop(); });
}

BufferCache::~BufferCache() {
  StopFlusher();
  FlushAll();
}

void BufferCache::StopFlusher() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  flusher_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

BufferCache::FilePtr BufferCache::GetFile(uint64_t gfid, bool create) {
  auto it = files_.find(gfid);
  if (it != files_.end()) return it->second;
  if (!create) return nullptr;
  auto f = std::make_shared<FileState>(gfid);
  files_.emplace(gfid, f);
  return f;
}

bool BufferCache::TimesPending(const FileState& f) { return f.mtime_ns && !f.times_sent; }

void BufferCache::Touch(Page* p) { lru_.splice(lru_.begin(), lru_, p->lru_pos); }

BufferCache::Page* BufferCache::GetOrCreatePage(FileState* f, uint64_t index) {
  auto it = f->pages.find(index);
  if (it != f->pages.end()) {
    Touch(it->second.get());
    return it->second.get();
  }
  EvictIfNeeded();
  auto p = std::make_unique<Page>();
  p->gfid = f->gfid;
  p->index = index;
  p->data.reset(new char[kPageSize]);
  lru_.push_front(p.get());
  p->lru_pos = lru_.begin();
  Page* raw = p.get();
  f->pages.emplace(index, std::move(p));
  total_pages_++;
  return raw;
}

void BufferCache::DropPage(FileState* f, uint64_t index) {
  auto it = f->pages.find(index);
  if (it == f->pages.end()) return;
  Page* p = it->second.get();
  if (!p->dirty.empty()) {
    f->dirty_pages--;
    dirty_pages_--;
  }
  lru_.erase(p->lru_pos);
  f->pages.erase(it);
  total_pages_--;
}

void BufferCache::EvictIfNeeded() {
  // Evict clean pages from the cold end. Dirty pages are skipped: writers are
  // throttled long before dirty data can fill the cache.
  auto it = lru_.end();
  while (total_pages_ >= capacity_pages_ && it != lru_.begin()) {
    auto cur = std::prev(it);
    Page* p = *cur;
    auto fit = files_.find(p->gfid);
    if (!p->dirty.empty() || fit == files_.end()) {
      it = cur;
      continue;
    }
    DropPage(fit->second.get(), p->index);  // erases cur; `it` stays valid
    evictions_->Add();
  }
}

void BufferCache::DropClean(FileState* f) {
  for (auto it = f->pages.begin(); it != f->pages.end();) {
    Page* p = it->second.get();
    ++it;
    if (p->dirty.empty()) {
      DropPage(f, p->index);
    } else {
      p->known = p->dirty;  // only the local bytes are still known
    }
  }
  f->next_read = 0;
  f->readahead = 0;
  f->drop_seq++;
}

uint64_t BufferCache::LogicalSize(const FileState& f) const {
  return std::max(f.storage_size, f.dirty_end);
}

void BufferCache::RecomputeDirtyEnd(FileState* f) {
  f->dirty_end = 0;
  if (f->dirty_pages == 0) return;
  for (auto it = f->pages.rbegin(); it != f->pages.rend(); ++it) {
    if (!it->second->dirty.empty()) {
      f->dirty_end = it->first * kPageSize + it->second->dirty.End();
      return;
    }
  }
}

int BufferCache::Read(uint64_t gfid, uint64_t offset, size_t size, std::string* out) {
  // A read races eviction and invalidation only rarely; retry a few times.
  for (int attempt = 0; attempt < 8; attempt++) {
    int err = ReadOnce(gfid, offset, size, out);
    if (err != EAGAIN) return err;
  }
  spdlog::error("read of {:#x} at {} kept racing cache invalidation", gfid, offset);
  return EIO;
}

int BufferCache::ReadOnce(uint64_t gfid, uint64_t offset, size_t size, std::string* out) {
  out->clear();
  if (size == 0) return 0;
  const uint64_t first = offset / kPageSize;
  const uint64_t last = (offset + size - 1) / kPageSize;

  std::vector<CacheBackend::Extent> extents;
  FilePtr f;
  uint64_t size_seq = 0, drop_seq = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    f = GetFile(gfid, true);
    size_seq = f->size_seq;
    drop_seq = f->drop_seq;
    // Sequential access grows the readahead window; a seek resets it.
    if (offset == f->next_read && offset != 0) {
      f->readahead = std::min<uint64_t>(std::max<uint64_t>(f->readahead * 2, 128 << 10),
                                        options_.max_readahead_bytes);
    } else {
      f->readahead = 0;
    }
    f->next_read = offset + size;

    auto complete = [&](uint64_t i) {
      auto it = f->pages.find(i);
      return it != f->pages.end() && it->second->known.Covers(0, kPageSize);
    };
    bool miss = false;
    for (uint64_t i = first; i <= last; i++) miss |= !complete(i);
    // Readahead rides along with a real miss: a fully cached request costs
    // no round trip, and the window is refilled one call at a time.
    const uint64_t fetch_last = miss ? last + f->readahead / kPageSize : last;
    for (uint64_t i = first; i <= fetch_last; i++) {
      if (complete(i)) {
        if (i <= last) hits_->Add();
        continue;
      }
      if (i <= last) {
        misses_->Add();
      } else {
        readahead_pages_->Add();
      }
      if (!extents.empty() && extents.back().offset + extents.back().length == i * kPageSize) {
        extents.back().length += kPageSize;
      } else {
        extents.push_back({i * kPageSize, kPageSize});
      }
    }
  }

  if (!extents.empty()) {
    std::vector<std::string> data;
    uint64_t file_size = 0;
    read_rpcs_->Add();
    int err = backend_->ReadExtents(gfid, extents, &data, &file_size);
    if (err != 0) return err;
    std::lock_guard<std::mutex> l(mu_);
    // Dropped, truncated or invalidated meanwhile: the data may be stale.
    if (GetFile(gfid, false) != f || f->drop_seq != drop_seq) return EAGAIN;
    if (f->size_seq == size_seq) {
      f->storage_size = file_size;
      f->size_seq++;
    }
    for (size_t e = 0; e < extents.size() && e < data.size(); e++) {
      const std::string& d = data[e];
      for (uint64_t off = 0; off < extents[e].length; off += kPageSize) {
        const uint64_t index = (extents[e].offset + off) / kPageSize;
        Page* p = GetOrCreatePage(f.get(), index);
        // Fill only the bytes not known locally: local bytes are newer.
        for (const auto& [lo, hi] : p->known.Gaps(kPageSize)) {
          for (uint32_t b = lo; b < hi; b++) {
            const uint64_t src = off + b;
            p->data[b] = src < d.size() ? d[src] : 0;
          }
        }
        p->known.Clear();
        p->known.Add(0, kPageSize);
      }
    }
  }

  std::lock_guard<std::mutex> l(mu_);
  const uint64_t end = std::min<uint64_t>(offset + size, LogicalSize(*f));
  if (end <= offset) return 0;
  out->resize(end - offset);
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t index = pos / kPageSize;
    const uint32_t in_page = pos % kPageSize;
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kPageSize - in_page, end - pos));
    auto it = f->pages.find(index);
    if (it == f->pages.end() || !it->second->known.Covers(in_page, in_page + n)) {
      // Evicted or invalidated between fetch and copy: let the caller retry.
      out->clear();
      return EAGAIN;
    }
    Touch(it->second.get());
    std::memcpy(out->data() + (pos - offset), it->second->data.get() + in_page, n);
    pos += n;
  }
  return 0;
}

int BufferCache::Write(uint64_t gfid, uint64_t offset, const char* data, size_t size) {
  bool throttle;
  {
    std::lock_guard<std::mutex> l(mu_);
    FilePtr f = GetFile(gfid, true);
    for (uint64_t pos = offset; pos < offset + size;) {
      const uint64_t index = pos / kPageSize;
      const uint32_t in_page = pos % kPageSize;
      const uint32_t n =
          static_cast<uint32_t>(std::min<uint64_t>(kPageSize - in_page, offset + size - pos));
      Page* p = GetOrCreatePage(f.get(), index);
      std::memcpy(p->data.get() + in_page, data + (pos - offset), n);
      if (p->dirty.empty()) {
        f->dirty_pages++;
        dirty_pages_++;
        if (f->dirty_pages == 1 && !TimesPending(*f)) f->dirty_since = std::chrono::steady_clock::now();
      }
      p->known.Add(in_page, in_page + n);
      p->dirty.Add(in_page, in_page + n);
      p->write_gen++;
      pos += n;
    }
    f->dirty_end = std::max(f->dirty_end, offset + size);
    throttle = dirty_pages_ > dirty_limit_pages_;
    if (dirty_pages_ > dirty_limit_pages_ / 2) flusher_cv_.notify_one();
  }
  if (throttle) ThrottleWriters();
  return 0;
}

void BufferCache::ThrottleWriters() {
  throttled_writes_->Add();
  // Write back the files that have been dirty longest until under the limit.
  for (int rounds = 0; rounds < 64; rounds++) {
    FilePtr oldest;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (dirty_pages_ <= dirty_limit_pages_) return;
      for (const auto& [gfid, f] : files_) {
        if (f->dirty_pages && (!oldest || f->dirty_since < oldest->dirty_since)) oldest = f;
      }
    }
    if (!oldest || FlushFile(oldest, /*durable=*/false, nullptr) != 0) return;
  }
}

int BufferCache::Flush(uint64_t gfid) {
  FilePtr f;
  {
    std::lock_guard<std::mutex> l(mu_);
    f = GetFile(gfid, false);
  }
  return f ? FlushFile(f, /*durable=*/false, nullptr) : 0;
}

int BufferCache::FlushDurable(uint64_t gfid, bool* durable, uint64_t* bytes_written,
                              ProvenHandoff* after) {
  if (bytes_written) *bytes_written = 0;
  if (after) *after = {};
  *durable = false;
  FilePtr f;
  {
    std::lock_guard<std::mutex> l(mu_);
    f = GetFile(gfid, false);
  }
  return f ? FlushFile(f, /*durable=*/true, durable, bytes_written, after) : 0;
}

int BufferCache::SyncForHandoff(uint64_t gfid, ProvenHandoff* after) {
  *after = {};
  FilePtr f;
  {
    std::lock_guard<std::mutex> l(mu_);
    f = GetFile(gfid, false);
  }
  std::unique_lock<std::mutex> flush_lock;
  if (f) flush_lock = std::unique_lock<std::mutex>(f->flush_mu);
  CacheBackend::WriteExtras extras;
  extras.durable = true;
  CacheBackend::WriteResult result;
  write_rpcs_->Add();
  handoff_syncs_->Add();
  const int err = backend_->WriteChunks(gfid, {}, extras, &result);
  if (err != 0) return err;
  *after = std::move(result.after);
  if (f) {
    std::lock_guard<std::mutex> l(mu_);
    f->unsynced = false;
  }
  return 0;
}

void BufferCache::KeepTimes(uint64_t gfid, int64_t mtime_ns) {
  std::lock_guard<std::mutex> l(mu_);
  FilePtr f = GetFile(gfid, true);
  if (!f->dirty_pages && !TimesPending(*f)) f->dirty_since = std::chrono::steady_clock::now();
  f->mtime_ns = mtime_ns;
  f->times_sent = false;
}

void BufferCache::DropTimes(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  FilePtr f = GetFile(gfid, false);
  if (f) f->mtime_ns.reset();
}

void BufferCache::DiscardDirty(uint64_t gfid) {
  FilePtr f;
  {
    std::lock_guard<std::mutex> l(mu_);
    f = GetFile(gfid, false);
  }
  if (!f) return;
  std::lock_guard<std::mutex> flush_lock(f->flush_mu);  // not while a flush sends it
  std::lock_guard<std::mutex> l(mu_);
  std::vector<uint64_t> dirty;
  for (const auto& [index, p] : f->pages) {
    if (!p->dirty.empty()) dirty.push_back(index);
  }
  for (uint64_t index : dirty) {
    discarded_dirty_->Add();
    DropPage(f.get(), index);
  }
  RecomputeDirtyEnd(f.get());
  if (!dirty.empty()) f->write_error = EIO;
  f->mtime_ns.reset();  // the times of writes that are gone
}

int BufferCache::TakeWriteError(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  FilePtr f = GetFile(gfid, false);
  if (!f) return 0;
  return std::exchange(f->write_error, 0);
}

int BufferCache::FlushFile(const FilePtr& f, bool durable, bool* made_durable,
                           uint64_t* bytes_written, ProvenHandoff* after) {
  std::lock_guard<std::mutex> flush_lock(f->flush_mu);
  const uint64_t gfid = f->gfid;
  if (made_durable) *made_durable = false;
  std::vector<uint64_t> pending;  // pages dirty when the flush began
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [index, p] : f->pages) {
      if (!p->dirty.empty()) pending.push_back(index);
    }
  }
  size_t next = 0;
  bool finished = false;   // a call carried the times and durability
  bool sync_only = false;  // a call with nothing but durability is owed
  while (!finished) {
    // Snapshot one batch: contiguous dirty bytes become one chunk. The
    // last one also carries the kept mtime and, when asked, durability; a
    // call with no chunks does when the last batch had none to send.
    std::vector<CacheBackend::Chunk> chunks;
    std::vector<std::pair<uint64_t, uint64_t>> written;  // (index, write_gen)
    uint64_t batch_bytes = 0;
    CacheBackend::WriteExtras extras;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (; next < pending.size() && batch_bytes < options_.max_write_batch_bytes; next++) {
        auto it = f->pages.find(pending[next]);
        if (it == f->pages.end() || it->second->dirty.empty()) continue;
        Page* p = it->second.get();
        for (const auto& [lo, hi] : p->dirty.ranges()) {
          const uint64_t off = p->index * kPageSize + lo;
          if (!chunks.empty() && chunks.back().offset + chunks.back().data.size() == off) {
            chunks.back().data.append(p->data.get() + lo, hi - lo);
          } else {
            chunks.push_back({off, std::string(p->data.get() + lo, hi - lo)});
          }
          batch_bytes += hi - lo;
        }
        written.emplace_back(p->index, p->write_gen);
      }
      if (!chunks.empty()) extras.mtime_ns = f->mtime_ns;
      if (next == pending.size()) {
        finished = true;
        if (TimesPending(*f)) extras.mtime_ns = f->mtime_ns;
        extras.durable = durable;
        sync_only = durable && f->unsynced;
      }
    }
    if (chunks.empty() && !extras.mtime_ns && !sync_only) continue;

    CacheBackend::WriteResult result;
    write_rpcs_->Add();
    int err = backend_->WriteChunks(gfid, std::move(chunks), extras, &result);
    const uint64_t file_size = result.file_size;
    const int64_t mtime_ns = result.mtime_ns;

    std::lock_guard<std::mutex> l(mu_);
    if (err == ESTALE || err == ENOENT) {
      // The file is gone on storage, or this node's right to write it was
      // fenced off: the data can never be written. Drop it and say so.
      spdlog::warn("dropping dirty data of {:#x}: storage refused the write (errno {})", gfid, err);
      for (auto& [index, gen] : written) {
        auto it = f->pages.find(index);
        if (it == f->pages.end()) continue;
        discarded_dirty_->Add();
        DropPage(f.get(), index);
      }
      RecomputeDirtyEnd(f.get());
      f->unsynced = false;  // what was sent is the next holder's, or gone
      f->mtime_ns.reset();
      if (written.empty()) return 0;  // only times, of a file that is gone
      f->write_error = EIO;
      return EIO;
    }
    if (err != 0) return err;  // the times stay for the next flush
    if (extras.mtime_ns && f->mtime_ns == extras.mtime_ns) f->times_sent = true;
    f->unsynced = !extras.durable;
    if (extras.durable && made_durable) *made_durable = true;
    if (extras.durable && after) *after = std::move(result.after);
    bytes_flushed_->Add(batch_bytes);
    if (bytes_written) *bytes_written += batch_bytes;
    for (auto& [index, gen] : written) {
      auto it = f->pages.find(index);
      if (it == f->pages.end() || it->second->write_gen != gen) continue;  // re-dirtied: keep
      it->second->dirty.Clear();
      f->dirty_pages--;
      dirty_pages_--;
    }
    f->storage_size = file_size;
    f->size_seq++;
    if (mtime_ns != 0) {
      f->version_known = true;
      f->version_size = file_size;
      f->version_mtime = mtime_ns;
    } else {
      f->version_known = false;
    }
    RecomputeDirtyEnd(f.get());
  }
  return 0;
}

int BufferCache::FlushAll() {
  std::vector<FilePtr> dirty;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [gfid, f] : files_) {
      if (f->dirty_pages || TimesPending(*f)) dirty.push_back(f);
    }
  }
  int first_err = 0;
  for (const FilePtr& f : dirty) {
    int err = FlushFile(f, /*durable=*/false, nullptr);
    if (err && !first_err) first_err = err;
  }
  return first_err;
}

void BufferCache::Invalidate(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  FilePtr f = GetFile(gfid, false);
  if (f) DropClean(f.get());
}

void BufferCache::Truncate(uint64_t gfid, uint64_t size) {
  FilePtr f;
  {
    std::lock_guard<std::mutex> l(mu_);
    f = GetFile(gfid, false);
  }
  if (!f) return;
  // Hold the flush lock so no in-flight flush writes bytes past the new end
  // after the truncate.
  std::lock_guard<std::mutex> flush_lock(f->flush_mu);
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t keep_pages = (size + kPageSize - 1) / kPageSize;
  while (!f->pages.empty() && f->pages.rbegin()->first >= keep_pages) {
    DropPage(f.get(), f->pages.rbegin()->first);
  }
  if (size % kPageSize != 0) {
    auto it = f->pages.find(size / kPageSize);
    if (it != f->pages.end()) {
      Page* p = it->second.get();
      const uint32_t cut = size % kPageSize;
      // Bytes past the end read as zeros if the file grows again.
      std::memset(p->data.get() + cut, 0, kPageSize - cut);
      p->known.Add(cut, kPageSize);
      const bool was_dirty = !p->dirty.empty();
      p->dirty.TrimAbove(cut);
      if (was_dirty && p->dirty.empty()) {
        f->dirty_pages--;
        dirty_pages_--;
      }
      p->write_gen++;
    }
  }
  f->storage_size = size;
  f->size_seq++;
  f->drop_seq++;
  RecomputeDirtyEnd(f.get());
  f->version_known = false;
}

bool BufferCache::ObserveVersion(uint64_t gfid, uint64_t size, int64_t mtime_ns, bool own) {
  std::lock_guard<std::mutex> l(mu_);
  // Created if absent, so that pages cached later are tied to this version.
  FilePtr f = GetFile(gfid, true);
  const bool changed = f->version_known &&
                       (f->version_mtime != mtime_ns || f->version_size != size);
  if (changed && !own && !f->pages.empty()) {
    remote_invalidations_->Add();
    DropClean(f.get());
  }
  f->version_known = true;
  f->version_size = size;
  f->version_mtime = mtime_ns;
  f->storage_size = size;
  f->size_seq++;
  return changed && !own;
}

uint64_t BufferCache::LocalSize(uint64_t gfid, uint64_t storage_size) {
  std::lock_guard<std::mutex> l(mu_);
  FilePtr f = GetFile(gfid, false);
  return f ? std::max(storage_size, f->dirty_end) : storage_size;
}

void BufferCache::Forget(uint64_t gfid) {
  {
    std::lock_guard<std::mutex> l(mu_);
    FilePtr f = GetFile(gfid, false);
    if (f) {
      f->forgotten = true;  // the flusher writes it back, drops it, then says so
      flusher_cv_.notify_one();
      return;
    }
  }
  backend_->Dropped(gfid);
}

void BufferCache::Remember(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  FilePtr f = GetFile(gfid, false);
  if (f) f->forgotten = false;
}

uint64_t BufferCache::cached_bytes() const {
  std::lock_guard<std::mutex> l(mu_);
  return total_pages_ * kPageSize;
}

uint64_t BufferCache::dirty_bytes() const {
  std::lock_guard<std::mutex> l(mu_);
  return dirty_pages_ * kPageSize;
}

void BufferCache::FlusherLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stopping_) {
    flusher_cv_.wait_for(l, std::chrono::milliseconds(100));
    if (stopping_) break;
    const auto now = std::chrono::steady_clock::now();
    const bool pressure = dirty_pages_ > dirty_limit_pages_ / 2;
    std::vector<std::pair<uint64_t, FilePtr>> work;
    for (const auto& [gfid, f] : files_) {
      // Kept times wait like dirty data: the data they belong to may still
      // be on its way from the kernel (it sends the times without waiting
      // for its own page writes), and should go in the same call.
      const bool dirty = f->dirty_pages || TimesPending(*f);
      if (f->forgotten ||
          (dirty && (pressure || now - f->dirty_since >= options_.writeback_delay))) {
        work.emplace_back(gfid, f);
      }
    }
    l.unlock();
    for (auto& [gfid, f] : work) {
      int err = FlushFile(f, /*durable=*/false, nullptr);
      if (err) spdlog::warn("background write-back of {:#x} failed: errno {}", gfid, err);
    }
    l.lock();
    // Drop forgotten files once they are clean.
    for (auto& [gfid, f] : work) {
      if (!f->forgotten || f->dirty_pages || TimesPending(*f)) continue;
      auto it = files_.find(gfid);
      if (it == files_.end() || it->second != f) continue;
      while (!f->pages.empty()) DropPage(f.get(), f->pages.begin()->first);
      files_.erase(it);
      backend_->Dropped(gfid);
    }
  }
}

}  // namespace dfuse
