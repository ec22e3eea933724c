#include "impl/writethrough/lease_gate.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include <spdlog/spdlog.h>

#include "impl/common/range_set.h"
#include "impl/common/revoke.h"

namespace dfuse {

namespace {

const uint64_t kKernelPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

uint64_t PageFloor(uint64_t x) { return x - x % kKernelPage; }
uint64_t PageCeil(uint64_t x) { return PageFloor(x + kKernelPage - 1); }

}  // namespace

struct LeaseGate::File {
  std::shared_mutex io_mu;  // shared: requests; exclusive: revocation
  LeaseMode held = LeaseMode::kNone;  // guarded by io_mu
  uint64_t epoch = 0;                 // guarded by io_mu; see Access::epoch
  // Guarded by io_mu: the agent's Losses() when `held` was last confirmed.
  // Once it differs, `held` may be a lease the session lost whose drop has
  // not run here yet: not served from until the agent confirms it again.
  uint64_t losses = 0;
  // Written under io_mu; read without it, by write-back that may run inside
  // a revoke (which holds io_mu exclusively).
  std::atomic<uint64_t> token{0};
  // Guarded by LeaseGate::mu_:
  int pending = 0;  // kernel invalidations queued or running
  int writers = 0;  // opens with write access on this node
  // The write(2)s between BeginWrite and EndWrite, by thread, each with
  // the pages of the READs served while it was in flight (lease_gate.h).
  std::unordered_map<pid_t, FileRangeSet> intents;
  bool revoking = false;
  bool forgotten = false;  // the kernel forgot the inode; any later use clears it
  int asking = 0;          // requests waiting for a grant, not yet entered
  bool lingering = false;  // a revoke waits for `asking` to reach 0
};

LeaseGate::LeaseGate(BufferCache* cache, KernelInvalidator invalidate, StatsRegistry* stats)
    : cache_(cache),
      invalidate_(std::move(invalidate)),
      revokes_(stats->GetCounter("lease.revokes_handled")),
      upgrades_(stats->GetCounter("lease.upgrades")),
      durable_flushes_(stats->GetCounter("lease.revoke_flushes")),
      slow_enters_(stats->GetCounter("lease.acquires")),
      intents_(stats->GetCounter("lease.write_intents")),
      stale_intents_(stats->GetCounter("lease.stale_write_intents")),
      stale_fill_invalidations_(stats->GetCounter("lease.stale_fill_invalidations")),
      stale_fill_pages_(stats->GetCounter("lease.stale_fill_pages")),
      stale_fill_whole_files_(stats->GetCounter("lease.stale_fill_whole_files")),
      kernel_inval_latency_(stats->GetLatency("lease.kernel_invalidation")),
      files_created_(stats->GetCounter("lease.gate_files_created")),
      files_reaped_(stats->GetCounter("lease.gate_files_reaped")),
      linger_timeouts_(stats->GetCounter("lease.linger_timeouts")) {
  invalidator_ = std::thread([this] { InvalidatorLoop(); });
}

LeaseGate::~LeaseGate() { Stop(); }

void LeaseGate::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (invalidator_.joinable()) invalidator_.join();
}

std::shared_ptr<LeaseGate::File> LeaseGate::Get(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto& f = files_[gfid];
  if (!f) {
    f = std::make_shared<File>();
    f->epoch = ++last_epoch_;
    files_created_->Add();
  }
  f->forgotten = false;
  return f;
}

uint64_t LeaseGate::Access::epoch() const { return file_ ? file_->epoch : 0; }

bool LeaseGate::HeldNow(const File& f, LeaseMode mode) const {
  // Past the term the manager may already have given the lease to someone
  // else, before the agent's timer drops it here; and a new session that
  // lost it makes the term trusted again before the drop has run here.
  // Trusted() first: see LeaseAgent::Losses().
  return f.held >= mode && agent_->Trusted() && agent_->Losses() == f.losses;
}

void LeaseGate::StartAsking(File* f) {
  std::lock_guard<std::mutex> l(mu_);
  f->asking++;
}

void LeaseGate::DoneAsking(File* f) {
  std::lock_guard<std::mutex> l(mu_);
  if (--f->asking == 0 && f->lingering) cv_.notify_all();
}

int LeaseGate::Enter(uint64_t gfid, LeaseMode mode, Access* access) {
  std::shared_ptr<File> f = Get(gfid);
  bool asked = false;  // counted in f->asking until entered or failed
  for (;;) {
    std::shared_lock<std::shared_mutex> lock(f->io_mu);
    if (HeldNow(*f, mode)) {
      if (asked) DoneAsking(f.get());
      access->file_ = std::move(f);
      access->lock_ = std::move(lock);
      return 0;
    }
    const uint64_t asked_at = f->epoch;
    const uint64_t losses_at_ask = agent_->Losses();
    lock.unlock();
    // Not held: ask the manager, without holding the I/O lock (a revoke of
    // this file may need it meanwhile).
    slow_enters_->Add();
    if (!asked) {
      StartAsking(f.get());
      asked = true;
    }
    uint64_t token = 0;
    int err = agent_->Acquire(gfid, mode, &token);
    if (err != 0) {
      DoneAsking(f.get());
      return err;
    }
    std::unique_lock<std::shared_mutex> update(f->io_mu);
    // The agent stops counting a lease as held as soon as a revoke of it
    // arrives, but the node keeps it until this gate's Revoke has run (it
    // waits for this lock and changes the epoch): a grant is this
    // request's if no Revoke ran since before it asked, and a revoke that
    // came right after the grant waits for the request (or lingers for
    // it). A Revoke that ran meanwhile may have given this very grant back
    // already, however soon the grant arrived: then ask again. So may a
    // lost session: then the grant is only good if the agent still has it.
    const bool trusted = agent_->Trusted();
    const uint64_t losses = agent_->Losses();
    if (agent_->Holds(gfid, mode, &token) ||
        (f->epoch == asked_at && trusted && losses == losses_at_ask)) {
      // What was held before a loss is not held any more than asked now.
      if (losses != f->losses) f->held = LeaseMode::kNone;
      if (mode > f->held) f->held = mode;
      if (mode == LeaseMode::kWrite) f->token = token;
      f->losses = losses;
    }
  }
}

bool LeaseGate::TryEnter(uint64_t gfid, LeaseMode mode, Access* access) {
  std::shared_ptr<File> f;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = files_.find(gfid);
    if (it == files_.end()) return false;
    f = it->second;
  }
  std::shared_lock<std::shared_mutex> lock(f->io_mu, std::try_to_lock);
  if (!lock.owns_lock() || !HeldNow(*f, mode)) return false;
  access->file_ = std::move(f);
  access->lock_ = std::move(lock);
  return true;
}

int LeaseGate::EnterForAttributes(uint64_t gfid, Access* access) {
  for (;;) {
    WaitKernelClean(gfid);
    WaitWritesDone(gfid);
    int err = Enter(gfid, LeaseMode::kRead, access);
    if (err != 0) return err;
    // A revoke that ran while Enter waited for the lease may have left an
    // invalidation behind: the kernel would serve the read this GETATTR
    // precedes from pages older than the lease. Revokes queue their
    // invalidation before they let go of the I/O lock, so while *access
    // holds it no new one can appear.
    {
      std::lock_guard<std::mutex> l(mu_);
      if (access->file_->pending == 0) return 0;
    }
    *access = Access();  // let go of the lease before waiting
  }
}

void LeaseGate::WaitKernelClean(uint64_t gfid) {
  std::unique_lock<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end()) return;
  std::shared_ptr<File> f = it->second;
  cv_.wait(l, [&] { return f->pending == 0 || stopping_; });
}

uint64_t LeaseGate::WriteToken(uint64_t gfid) {
  // Write-back of a forgotten file asks too: neither create state for it
  // nor count it as a use.
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  return it == files_.end() ? 0 : it->second->token.load();
}

void LeaseGate::OpenedForWrite(uint64_t gfid) {
  std::shared_ptr<File> f = Get(gfid);
  std::lock_guard<std::mutex> l(mu_);
  f->writers++;
}

void LeaseGate::ClosedForWrite(uint64_t gfid) {
  std::shared_ptr<File> f = Get(gfid);
  std::lock_guard<std::mutex> l(mu_);
  if (f->writers > 0) f->writers--;
}

int LeaseGate::BeginWrite(uint64_t gfid, pid_t task) {
  std::shared_ptr<File> f = Get(gfid);
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      if (f->writers == 0) return 0;
      // Not during a revoke, and not before the kernel has dropped what an
      // earlier revoke left: the write's page copy must survive.
      cv_.wait(l, [&] { return (!f->revoking && f->pending == 0) || stopping_; });
    }
    Access access;
    int err = Enter(gfid, LeaseMode::kWrite, &access);
    if (err != 0) return err;
    std::lock_guard<std::mutex> l(mu_);
    if (!f->revoking && f->pending == 0) {
      // An intent the thread already has is one whose write(2) failed
      // before its WRITE: its READs still count.
      f->intents.try_emplace(task);
      intents_->Add();
      return 0;
    }
  }
}

void LeaseGate::EndWrite(uint64_t gfid, pid_t task, uint64_t offset, uint64_t length) {
  std::shared_ptr<File> f = Get(gfid);
  bool stale = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = f->intents.find(task);
    if (it == f->intents.end()) return;  // a write(2) that began with no intent
    const FileRangeSet reads = std::move(it->second);
    f->intents.erase(it);
    // Queued before the intent ends: a GETATTR that waited for the writes
    // finds them pending (EnterForAttributes).
    if (length == 0 && !reads.empty()) {
      QueueInvalidationLocked(gfid, f.get());
      stale_fill_whole_files_->Add();
      stale = true;
    } else {
      for (const auto& [lo, hi] : reads.Overlap(PageFloor(offset), PageCeil(offset + length))) {
        QueueInvalidationLocked(gfid, f.get(), lo, hi - lo);
        stale_fill_pages_->Add((hi - lo) / kKernelPage);
        stale = true;
      }
    }
    if (stale) stale_fill_invalidations_->Add();
    // Waiters want the last intent gone; the invalidator, a queued job.
    if (stale || f->intents.empty()) cv_.notify_all();
  }
  // The kernel's write path drops the size and mtime it holds too, but the
  // next read(2) must not depend on that to ask (and so wait).
  if (stale) DropKernelAttributes(gfid);
}

void LeaseGate::ReadStarting(const Access& access, uint64_t offset, uint64_t length) {
  const uint64_t lo = PageFloor(offset);
  const uint64_t hi = PageCeil(offset + length);
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [task, reads] : access.file_->intents) reads.Add(lo, hi);
}

void LeaseGate::QueueInvalidationLocked(uint64_t gfid, File* f, uint64_t offset, uint64_t length) {
  f->pending++;
  queue_.push_back({Job::kInvalidate, gfid, offset, length});
}

void LeaseGate::WaitWritesDone(uint64_t gfid) {
  std::shared_ptr<File> f = Get(gfid);
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, kIntentTimeout, [&] { return f->intents.empty() || stopping_; });
}

void LeaseGate::Revoke(uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger) {
  revokes_->Add();
  std::shared_ptr<File> f = Get(gfid);
  {
    std::unique_lock<std::mutex> l(mu_);
    if (linger.count() > 0) {
      // Requests go on as usual meanwhile. A request that waits for a
      // later grant of this file (one queued behind this revoke) keeps it
      // for the whole linger: nothing tells the two grants apart here.
      f->lingering = true;
      if (!cv_.wait_for(l, std::min(linger, kMaxLinger),
                        [&] { return f->asking == 0 || stopping_; })) {
        linger_timeouts_->Add();
      }
      f->lingering = false;
    }
    // Let the write(2)s that hold the lease finish, and start no new ones.
    f->revoking = true;
    if (!cv_.wait_for(l, kIntentTimeout, [&] { return f->intents.empty(); })) {
      // The invalidation below drops every page their READs filled.
      stale_intents_->Add(f->intents.size());
      f->intents.clear();
    }
  }
  {
    std::unique_lock<std::shared_mutex> lock(f->io_mu);
    WriteBackForRevoke(cache_, gfid, to, durable_flushes_);
    f->epoch = ++last_epoch_;
    if (f->held > to) f->held = to;
    if (to != LeaseMode::kWrite) f->token = 0;
    // Queued before the I/O lock is let go (see EnterForAttributes).
    std::lock_guard<std::mutex> l(mu_);
    f->revoking = false;
    QueueInvalidationLocked(gfid, f.get());
    cv_.notify_all();
  }
  // With the page invalidation pending, make the kernel ask for attributes
  // (and so wait for it) before it serves the next read(2) from its cache.
  DropKernelAttributes(gfid);
}

void LeaseGate::KeepForUpgrade(uint64_t gfid) {
  upgrades_->Add();
  std::shared_ptr<File> f = Get(gfid);
  {
    // Waits for the requests served under the READ lease. The READ lease
    // is given up: a request that asked before must not take its grant as
    // still current (Enter), so the epoch changes as at a revoke.
    std::unique_lock<std::shared_mutex> lock(f->io_mu);
    f->held = LeaseMode::kNone;
    f->epoch = ++last_epoch_;
  }
  DropKernelAttributes(gfid);
}

void LeaseGate::ReleaseAll() {
  std::vector<std::pair<uint64_t, std::shared_ptr<File>>> files;
  {
    std::lock_guard<std::mutex> l(mu_);
    files.assign(files_.begin(), files_.end());
  }
  for (auto& [gfid, f] : files) {
    std::shared_lock<std::shared_mutex> lock(f->io_mu);
    if (f->held != LeaseMode::kNone) agent_->Release(gfid);
  }
}

void LeaseGate::Forget(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end()) return;
  it->second->forgotten = true;
  queue_.push_back({Job::kForget, gfid});
  cv_.notify_all();
}

void LeaseGate::Reap(uint64_t gfid, const std::shared_ptr<File>& f) {
  {
    // The kernel has no inode left to cache anything in: write back what
    // this node still has and give the lease back, as a revoke would.
    std::unique_lock<std::shared_mutex> lock(f->io_mu);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!f->forgotten) return;  // looked up and used again meanwhile
    }
    if (f->held != LeaseMode::kNone) {
      WriteBackForRevoke(cache_, gfid, LeaseMode::kNone, durable_flushes_);
      agent_->Release(gfid);
      f->held = LeaseMode::kNone;
      f->token = 0;
      f->epoch = ++last_epoch_;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  // Only an entry nobody else holds may go: a second File for the same
  // file would split its lock.
  if (it != files_.end() && it->second == f && f->forgotten && f->pending == 0 && f->writers == 0 &&
      f->intents.empty() && !f->revoking && f.use_count() == 2) {
    files_.erase(it);
    files_reaped_->Add();
  }
}

void LeaseGate::InvalidatorLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const Job job = queue_.front();
    queue_.pop_front();
    auto it = files_.find(job.gfid);
    if (it == files_.end()) continue;
    std::shared_ptr<File> f = it->second;
    l.unlock();
    if (job.kind == Job::kForget) {
      Reap(job.gfid, f);
    } else {
      ScopedLatency t(kernel_inval_latency_);
      invalidate_(job.gfid, static_cast<int64_t>(job.offset), static_cast<int64_t>(job.length));
    }
    l.lock();
    if (job.kind == Job::kInvalidate) f->pending--;
    cv_.notify_all();
  }
}

}  // namespace dfuse
