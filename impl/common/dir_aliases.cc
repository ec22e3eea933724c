#include "impl/common/dir_aliases.h"

#include <spdlog/spdlog.h>

namespace dfuse {

DirAliases::DirAliases(StatsRegistry* stats)
    : invalidations_(stats->GetCounter("fuse.stale_dir_alias_invalidations")) {}

DirAliases::~DirAliases() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  settled_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DirAliases::Start(fuse_session* se) {
  Start([se](fuse_ino_t parent, const std::string& name) {
    return fuse_lowlevel_notify_inval_entry(se, parent, name.c_str(), name.size());
  });
}

void DirAliases::Start(EntryInvalidator invalidate) {
  std::lock_guard<std::mutex> l(mu_);
  invalidate_ = std::move(invalidate);
  thread_ = std::thread([this] { Run(); });
}

void DirAliases::Place(fuse_ino_t ino, std::pair<fuse_ino_t, std::string> entry) {
  auto old = at_.find(entry);
  if (old != at_.end() && old->second != ino) where_.erase(old->second);
  at_[entry] = ino;
  where_[ino] = std::move(entry);
}

void DirAliases::Seen(fuse_ino_t ino, fuse_ino_t parent, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = where_.find(ino);
  if (it == where_.end()) {
    Place(ino, {parent, name});
    return;
  }
  if (it->second.first == parent && it->second.second == name) return;
  at_.erase(it->second);
  stale_.push_back({ino, it->second.first, std::move(it->second.second)});
  Place(ino, {parent, name});
  pending_[ino]++;
  queued_++;
  cv_.notify_one();
}

void DirAliases::Renamed(fuse_ino_t parent, const std::string& name, fuse_ino_t new_parent,
                         const std::string& new_name, bool exchange) {
  std::lock_guard<std::mutex> l(mu_);
  auto take = [&](const std::pair<fuse_ino_t, std::string>& entry) -> fuse_ino_t {
    auto it = at_.find(entry);
    if (it == at_.end()) return 0;
    const fuse_ino_t ino = it->second;
    at_.erase(it);
    where_.erase(ino);
    return ino;
  };
  const fuse_ino_t moved = take({parent, name});
  const fuse_ino_t other = take({new_parent, new_name});  // exchanged, or replaced: gone
  if (moved != 0) Place(moved, {new_parent, new_name});
  if (exchange && other != 0) Place(other, {parent, name});
}

void DirAliases::WaitSettled(fuse_ino_t ino, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  settled_cv_.wait_for(l, timeout, [&] { return stopping_ || !pending_.count(ino); });
}

bool DirAliases::Pending(fuse_ino_t ino) {
  std::lock_guard<std::mutex> l(mu_);
  return pending_.count(ino) != 0;
}

void DirAliases::WaitQueuedSettled(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  const uint64_t target = queued_;
  settled_cv_.wait_for(l, timeout, [&] { return stopping_ || done_ >= target; });
}

void DirAliases::Forget(fuse_ino_t ino) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = where_.find(ino);
  if (it == where_.end()) return;
  at_.erase(it->second);
  where_.erase(it);
}

void DirAliases::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [this] { return stopping_ || !stale_.empty(); });
    if (stopping_) return;
    Stale st = std::move(stale_.front());
    stale_.pop_front();
    l.unlock();
    // ENOENT just means the kernel had already dropped that entry.
    const int err = invalidate_(st.parent, st.name);
    if (err == 0) invalidations_->Add();
    if (err != 0 && err != -ENOENT) {
      spdlog::debug("invalidating stale entry {} in {}: {}", st.name, st.parent, err);
    }
    l.lock();
    if (--pending_[st.ino] == 0) pending_.erase(st.ino);
    done_++;
    settled_cv_.notify_all();
  }
}

}  // namespace dfuse
