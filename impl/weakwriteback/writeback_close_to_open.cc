#include "impl/weakwriteback/writeback_close_to_open.h"

#include <sys/stat.h>

#include <cerrno>
#include <string>

#include <spdlog/spdlog.h>

namespace dfuse {

WriteBackCloseToOpen::WriteBackCloseToOpen(const PolicyContext& ctx)
    : CloseToOpen(ctx),
      replaced_(ctx.stats->GetCounter("close_to_open.replaced_inodes")),
      refreshed_(ctx.stats->GetCounter("close_to_open.refreshed_inodes")) {}

WriteBackCloseToOpen::~WriteBackCloseToOpen() { Stop(); }

void WriteBackCloseToOpen::Attach(fuse_session* se) {
  se_.store(se);
  Attach([se](fuse_ino_t parent, const std::string& name) {
    return fuse_lowlevel_notify_inval_entry(se, parent, name.c_str(), name.size());
  });
}

void WriteBackCloseToOpen::Attach(EntryInvalidator invalidate) {
  std::lock_guard<std::mutex> l(mu_);
  invalidate_ = std::move(invalidate);
  evictor_ = std::thread([this] { EvictorLoop(); });
}

void WriteBackCloseToOpen::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (evictor_.joinable()) evictor_.join();
}

void WriteBackCloseToOpen::EvictorLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [this] { return stopping_ || !evictions_.empty(); });
    if (stopping_) return;  // waiting opens time out and answer ESTALE
    std::unique_ptr<Eviction> e = std::move(evictions_.front());
    evictions_.pop_front();
    l.unlock();
    const int err = invalidate_(e->parent, e->name);
    if (err != 0 && err != -ENOENT) spdlog::debug("invalidating {} in {}: {}", e->name, e->parent, err);
    e->done.set_value();
    l.lock();
  }
}

void WriteBackCloseToOpen::EntryGiven(const proto::Attr& attr, fuse_ino_t parent,
                                      const std::string& name) {
  if (!S_ISREG(attr.mode())) return;
  std::lock_guard<std::mutex> l(mu_);
  File& f = files_[attr.gfid()];
  f.parent = parent;
  f.name = name;
}

int WriteBackCloseToOpen::Open(uint64_t gfid, pid_t caller, fuse_file_info* fi) {
  proto::Attr attr;
  bool changed = false;
  const int err = Revalidate(gfid, &attr, &changed);
  if (err != 0) return err;
  std::future<void> evicted;
  uint64_t grow_to = 0;
  {
    std::unique_lock<std::mutex> l(mu_);
    auto it = files_.find(gfid);
    if (it == files_.end()) return 0;  // the kernel never got it by name: nothing to fix
    File& f = it->second;
    if (changed) f.stale = true;
    const Clock::time_point now = Clock::now();
    const bool retry = TakeRetryLocked(caller, now);
    if (f.stale && f.opens == 0 && !retry && !f.evicting && f.parent != 0 &&
        evictor_.joinable()) {
      auto e = std::make_unique<Eviction>();
      e->parent = f.parent;
      e->name = f.name;
      evicted = e->done.get_future();
      evictions_.push_back(std::move(e));
      cv_.notify_all();
      f.stale = false;
      f.evicting = true;
      // Entries whose retry never came (the thread was killed) are dropped
      // once there are more than a few.
      if (retries_.size() > 64) std::erase_if(retries_, [now](auto& r) { return r.second <= now; });
      retries_[caller] = now + kRetryWindow;
    } else if (f.stale || f.evicting || retry) {
      // The kernel may still have the inode it had: the file is open here,
      // an open races the eviction, or the inode survived it.
      fi->keep_cache = 0;
      grow_to = attr.size();
      if (f.stale) refreshed_->Add();
      f.stale = false;
      if (retry) f.evicting = false;
    }
  }
  if (evicted.valid()) {
    evicted.wait_for(kEvictWait);
    replaced_->Add();
    return ESTALE;
  }
  if (grow_to > 0) RaiseKernelSize(gfid, grow_to);
  return 0;
}

bool WriteBackCloseToOpen::TakeRetryLocked(pid_t caller, Clock::time_point now) {
  auto it = retries_.find(caller);
  if (it == retries_.end()) return false;
  const bool live = it->second > now;
  retries_.erase(it);
  return live;
}

void WriteBackCloseToOpen::RaiseKernelSize(uint64_t gfid, uint64_t size) {
  fuse_session* se = se_.load();
  if (se == nullptr) return;
  // A store of the file's last byte raises the kernel's size to `size` if
  // it is lower (it ignores a store of no bytes). The page it lands in is
  // dropped again when the open replies without FOPEN_KEEP_CACHE.
  std::string last;
  int err = ctx_.cache->Read(gfid, size - 1, 1, &last);
  if (err != 0 || last.size() != 1) return;  // shorter by now: nothing to raise
  fuse_bufvec buf = FUSE_BUFVEC_INIT(1);
  buf.buf[0].mem = last.data();
  err = fuse_lowlevel_notify_store(se, ctx_.Ino(gfid), static_cast<off_t>(size - 1), &buf,
                                   FUSE_BUF_SPLICE_NONBLOCK);
  if (err != 0 && err != -ENOENT) spdlog::warn("raising the size of {:#x}: {}", gfid, err);
}

void WriteBackCloseToOpen::Opened(uint64_t gfid, int) {
  std::lock_guard<std::mutex> l(mu_);
  files_[gfid].opens++;
}

void WriteBackCloseToOpen::Closed(uint64_t gfid, int) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it != files_.end() && it->second.opens > 0) it->second.opens--;
}

void WriteBackCloseToOpen::Observed(const proto::Attr& attr, bool, bool changed_elsewhere) {
  if (!changed_elsewhere || !S_ISREG(attr.mode())) return;
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(attr.gfid());
  if (it != files_.end()) it->second.stale = true;
}

void WriteBackCloseToOpen::Forgotten(uint64_t gfid) {
  // The kernel has no inode for gfid any more: the next one starts afresh.
  std::lock_guard<std::mutex> l(mu_);
  files_.erase(gfid);
}

size_t WriteBackCloseToOpen::tracked_files() const {
  std::lock_guard<std::mutex> l(mu_);
  return files_.size();
}

}  // namespace dfuse
