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

void DirAliases::Seen(fuse_ino_t ino, fuse_ino_t parent, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto [it, inserted] = where_.try_emplace(ino, parent, name);
  if (inserted || (it->second.first == parent && it->second.second == name)) return;
  stale_.push_back({ino, it->second.first, std::move(it->second.second)});
  it->second = {parent, name};
  pending_[ino]++;
  queued_++;
  cv_.notify_one();
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
  where_.erase(ino);
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
