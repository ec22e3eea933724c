#include "impl/dfuse/kernel_leases.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

#include "impl/common/revoke.h"
#include "kernel/dfuse/dfuse_proto.h"
#include "proto/storage.pb.h"
#include "util/extent_set.h"

namespace dfuse {

using lease::LeaseMode;

namespace {

using Clock = std::chrono::steady_clock;

// dfuse.ko speaks in lease::LeaseMode's values.
static_assert(DFUSE_LEASE_NONE == static_cast<uint32_t>(LeaseMode::kNone));
static_assert(DFUSE_LEASE_READ == static_cast<uint32_t>(LeaseMode::kRead));
static_assert(DFUSE_LEASE_WRITE == static_cast<uint32_t>(LeaseMode::kWrite));

// What the kernel may ask for: a lease, not kNone (which only releases use).
bool ToMode(uint32_t kernel_mode, LeaseMode* mode) {
  if (kernel_mode != DFUSE_LEASE_READ && kernel_mode != DFUSE_LEASE_WRITE) return false;
  *mode = static_cast<LeaseMode>(kernel_mode);
  return true;
}

// As libfuse fills a GETATTR's reply.
void FillFuseAttr(const struct stat& st, double timeout, dfuse_lease_out* out) {
  fuse_attr& a = out->attr;
  a.ino = st.st_ino;
  a.mode = st.st_mode;
  a.nlink = static_cast<uint32_t>(st.st_nlink);
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = static_cast<uint32_t>(st.st_rdev);
  a.size = static_cast<uint64_t>(st.st_size);
  a.blocks = static_cast<uint64_t>(st.st_blocks);
  a.blksize = static_cast<uint32_t>(st.st_blksize);
  a.atime = static_cast<uint64_t>(st.st_atim.tv_sec);
  a.atimensec = static_cast<uint32_t>(st.st_atim.tv_nsec);
  a.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  a.mtimensec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  a.ctime = static_cast<uint64_t>(st.st_ctim.tv_sec);
  a.ctimensec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
  timeout = std::clamp(timeout, 0.0, 1e12);  // a year is "forever" to the kernel
  out->attr_valid = static_cast<uint64_t>(timeout);
  out->attr_valid_nsec = std::min(
      static_cast<uint32_t>((timeout - static_cast<double>(out->attr_valid)) * 1e9), 999999999u);
  out->flags |= DFUSE_LEASE_ATTR;
}

}  // namespace

KernelLeases::KernelLeases(const PolicyContext& ctx)
    : ctx_(ctx),
      upcalls_(ctx.stats->GetCounter("kernel_leases.upcalls")),
      dir_upcalls_(ctx.stats->GetCounter("kernel_leases.dir_upcalls")),
      interrupted_(ctx.stats->GetCounter("kernel_leases.interrupted")),
      releases_(ctx.stats->GetCounter("kernel_leases.releases")),
      dir_releases_(ctx.stats->GetCounter("kernel_leases.dir_releases")),
      release_errors_(ctx.stats->GetCounter("kernel_leases.release_errors")),
      durable_flushes_(ctx.stats->GetCounter("kernel_leases.durable_flushes")),
      attrs_handed_over_(ctx.stats->GetCounter("kernel_leases.attrs_handed_over")),
      attrs_with_grant_(ctx.stats->GetCounter("kernel_leases.attrs_with_grant")),
      ranges_invalidated_(ctx.stats->GetCounter("kernel_leases.ranges_invalidated")),
      upcall_latency_(ctx.stats->GetLatency("kernel_leases.upcall")),
      kernel_release_latency_(ctx.stats->GetLatency("kernel_leases.kernel_release")),
      files_reaped_(ctx.stats->GetCounter("kernel_leases.files_reaped")) {
  ctx_.stats->SetProbe("kernel_leases", [this] { return State(); });
}

KernelLeases::~KernelLeases() {
  ctx_.stats->RemoveProbe("kernel_leases");
  Stop();
}

int KernelLeases::Start(CachePolicy* cache, std::string* error) {
  dir_leases_ = cache->dir_leases;
  lease::LeaseAgentOptions opts;
  opts.manager = ctx_.lease_manager;
  opts.name = ctx_.node_name;
  opts.emulated_rtt = ctx_.emulated_rtt;
  opts.credentials = ctx_.credentials;
  opts.lingers = cache->linger;
  opts.before_upgrade = [this](uint64_t gfid, uint64_t grant) { KeepForUpgrade(gfid, grant); };
  opts.release_keeping = [this](uint64_t gfid, std::chrono::milliseconds linger) {
    return ReleaseKeeping(gfid, linger);
  };
  opts.refresh_kept = [this](uint64_t gfid, const std::vector<std::string>& since) {
    return RefreshKept(gfid, since);
  };
  agent_ = std::make_unique<lease::LeaseAgent>(
      opts,
      [this](uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger) {
        Release(gfid, to, linger);
      },
      ctx_.stats);
  const int err = agent_->Start(ctx_.first_contact, error);
  if (err == 0) reaper_ = std::thread([this] { ReaperLoop(); });
  return err;
}

std::vector<std::string> KernelLeases::MountOptions() const {
  if (dir_leases_) return {"leases", "dirleases"};
  return {"leases"};
}

void KernelLeases::ServeAttrsFrom(AttrSource source) { attrs_ = std::move(source); }

void KernelLeases::Attach(fuse_session* se) { AttachFd(fuse_session_fd(se)); }

void KernelLeases::AttachFd(int fd) {
  std::lock_guard<std::mutex> l(mu_);
  fd_ = fd;
}

bool KernelLeases::Intercept(const fuse_in_header& header, const char* arg, size_t size) {
  if (header.opcode == DFUSE_LEASE) {
    dfuse_lease_in in{};
    LeaseMode mode = LeaseMode::kNone;
    if (size < sizeof(in)) {
      Reply(header.unique, EINVAL);
      return true;
    }
    std::memcpy(&in, arg, sizeof(in));
    if (!ToMode(in.mode, &mode)) {
      Reply(header.unique, EINVAL);
      return true;
    }
    const bool directory = (in.flags & DFUSE_LEASE_DIR) != 0;
    const uint64_t gfid = ctx_.Gfid(header.nodeid);
    std::lock_guard<std::mutex> l(mu_);
    pending_[header.unique] = Pending{.interruptible = (in.flags & DFUSE_LEASE_NOINTR) == 0,
                                      .gfid = gfid,
                                      .mode = mode,
                                      .since = Clock::now()};
    upcalls_->Add();
    if (directory) dir_upcalls_->Add();
    queue_.push_back(
        Upcall{header.unique, gfid, mode, directory, (in.flags & DFUSE_LEASE_ATTR) != 0});
    if (idle_ == 0 && workers_.size() < kMaxWorkers) {
      workers_.emplace_back([this] { WorkerLoop(); });
    } else {
      cv_.notify_one();
    }
    return true;
  }
  if (header.opcode == FUSE_INTERRUPT && size >= sizeof(fuse_interrupt_in)) {
    fuse_interrupt_in in{};
    std::memcpy(&in, arg, sizeof(in));
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending_.find(in.unique);
      if (it == pending_.end()) return false;  // a request libfuse serves
      // A page fault cannot back out: its acquire just completes.
      if (!it->second.interruptible) return true;
    }
    interrupted_->Add();
    Answer(in.unique, EINTR, {});
    return true;
  }
  return false;
}

void KernelLeases::WorkerLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    idle_++;
    cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
    idle_--;
    if (stopping_) return;
    Upcall u = queue_.front();
    queue_.pop_front();
    l.unlock();
    Serve(u);
    l.lock();
  }
}

void KernelLeases::Serve(const Upcall& u) {
  const auto start = Clock::now();
  uint64_t grant = 0;
  const int err = Acquire(u.gfid, u.mode, /*kernel_asked=*/true, u.directory, &grant);
  if (err != 0) {
    spdlog::warn("lease {} on {:#x} failed: errno {}",
                 u.mode == LeaseMode::kWrite ? "WRITE" : "READ", u.gfid, err);
  }
  dfuse_lease_out out{};
  out.mode = static_cast<uint32_t>(u.mode);
  // The kernel compares grant numbers modulo 2^32.
  out.grant = static_cast<uint32_t>(grant);
  // Fetched under the lease just granted: nobody else can change the file
  // until this node acks a revoke, which waits for the kernel to take this
  // answer in (or to drop it, if the revoke's release wins the race).
  if (err == 0 && u.want_attr && !u.directory) AttrsForGrant(u.gfid, &out);
  upcall_latency_->Record(Clock::now() - start);
  Answer(u.unique, err, out);
}

bool KernelLeases::AttrsForGrant(uint64_t gfid, dfuse_lease_out* out) {
  if (!attrs_) return false;
  struct stat st {};
  double timeout = 0;
  if (attrs_(gfid, &st, &timeout) != 0 || !S_ISREG(st.st_mode)) return false;
  FillFuseAttr(st, timeout, out);
  attrs_with_grant_->Add();
  return true;
}

int KernelLeases::Acquire(uint64_t gfid, LeaseMode mode, bool kernel_asked, bool directory,
                          uint64_t* grant) {
  {
    // A reap in progress gives the lease back: ask only after it.
    std::unique_lock<std::mutex> l(mu_);
    reap_cv_.wait(l, [&] { return stopping_ || !files_[gfid].reaping; });
    File& f = files_[gfid];
    if (kernel_asked) {
      f.forgotten = false;  // the kernel has the inode again
      f.directory = directory;
    }
    f.serving++;
  }
  uint64_t token = 0;
  const int err = agent_->Acquire(gfid, mode, &token, grant);
  std::lock_guard<std::mutex> l(mu_);
  File& f = files_[gfid];
  f.serving--;
  // Not if a revoke took the lease before this caller woke: the token
  // would outlive the revoke's reset of it. (Asking the agent under mu_ is
  // safe: it calls into this class only with its own lock released.)
  uint64_t held = 0;
  if (err == 0 && mode == LeaseMode::kWrite && agent_->Holds(gfid, LeaseMode::kWrite, &held) &&
      held == token) {
    f.token = token;
  }
  // Forgotten while the acquire waited (an interrupted upcall, or a file
  // the kernel no longer had): the reaper skipped it then.
  if (f.forgotten && f.serving == 0) {
    reap_queue_.push_back(gfid);
    reap_cv_.notify_all();
  }
  return err;
}

int KernelLeases::LinkCountChanged(uint64_t gfid) {
  // The kernel entered the file's WRITE lease around the request, and the
  // parent's made sure storage changed the file the kernel named. Asking
  // here could even wait for a revoke that waits for that very request.
  if (dir_leases_) return 0;
  // Other nodes' kernels answer fstat from the attributes they cached
  // under their lease, link count included. Taking the WRITE lease
  // releases each of them, and every release drops the cached attributes.
  // This runs on a loop thread with the victim's i_rwsem held by the VFS;
  // that is safe because a release never takes i_rwsem and this node's own
  // release (an upgrade from READ) writes nothing back. The lease stays
  // with this node until revoked or reaped, like one the kernel asked for.
  const int err = Acquire(gfid, LeaseMode::kWrite, /*kernel_asked=*/false);
  // Taken after the change: what the grant handed over is from before it.
  if (agent_) agent_->DropHandoff(gfid);
  if (err != 0) spdlog::warn("link count of {:#x} changed, others not told: errno {}", gfid, err);
  return err;
}

int KernelLeases::DeviceFd() {
  std::lock_guard<std::mutex> l(mu_);
  return fd_;
}

void KernelLeases::Answer(uint64_t unique, int error, const dfuse_lease_out& out) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (pending_.erase(unique) == 0) return;  // answered already (interrupted)
  }
  Reply(unique, error, out);
}

void KernelLeases::Reply(uint64_t unique, int error, const dfuse_lease_out& arg) {
  fuse_out_header out{};
  out.unique = unique;
  out.error = -error;
  out.len = sizeof(out) + (error != 0 ? 0 : sizeof(arg));  // an error carries no payload
  const int fd = DeviceFd();
  iovec iov[2] = {{&out, sizeof(out)}, {const_cast<dfuse_lease_out*>(&arg), sizeof(arg)}};
  if (writev(fd, iov, error != 0 ? 1 : 2) < 0 && errno != ENOENT && errno != ENODEV) {
    spdlog::error("answering a lease request: {}", std::strerror(errno));
  }
}

uint64_t KernelLeases::WriteToken(uint64_t gfid) {
  uint64_t token = 0;
  if (agent_ && agent_->Holds(gfid, LeaseMode::kWrite, &token)) return token;
  // During a revoke the agent has let go already, but the flush that
  // completes it still writes under the lease being revoked: the agent's
  // token for it, also when the revoke came before the upcall that asked
  // for the lease was answered (and so before Acquire recorded it).
  if (agent_ && (token = agent_->RevokedWriteToken(gfid)) != 0) return token;
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  return it == files_.end() ? 0 : it->second.token;
}

void KernelLeases::NotifyKernel(uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger,
                                uint32_t flags, uint64_t grant) {
  releases_->Add();
  dfuse_notify_release_out arg{};
  arg.nodeid = ctx_.Ino(gfid);
  arg.mode = static_cast<uint32_t>(to);
  arg.linger_ms =
      static_cast<uint32_t>(std::clamp<int64_t>(linger.count(), 0, DFUSE_LINGER_MAX_MS));
  arg.end = UINT64_MAX;
  arg.flags = flags;
  arg.grant = static_cast<uint32_t>(grant);
  const auto start = Clock::now();
  // Blocks while the kernel writes back through this daemon's loop.
  const int err = WriteNotify(DFUSE_NOTIFY_RELEASE, &arg, sizeof(arg));
  if (err < 0) return;
  if (err != 0 && err != ENOENT && err != ENODEV) {
    release_errors_->Add();
    spdlog::error("kernel release of {:#x}: {}", gfid, std::strerror(err));
  }
  kernel_release_latency_->Record(Clock::now() - start);
}

int KernelLeases::WriteNotify(int32_t code, const void* arg, size_t size) {
  const int fd = DeviceFd();
  if (fd < 0) return -1;
  fuse_out_header out{};
  out.len = static_cast<uint32_t>(sizeof(out) + size);
  out.error = code;
  iovec iov[2] = {{&out, sizeof(out)}, {const_cast<void*>(arg), size}};
  return writev(fd, iov, 2) < 0 ? errno : 0;
}

void KernelLeases::KeepForUpgrade(uint64_t gfid, uint64_t grant) {
  // The kernel compares grant numbers modulo 2^32; one that truncates to 0
  // names none.
  const uint32_t flags = static_cast<uint32_t>(grant) != 0
                             ? DFUSE_RELEASE_KEEP_PAGES | DFUSE_RELEASE_UPGRADE
                             : DFUSE_RELEASE_KEEP_PAGES;
  NotifyKernel(gfid, LeaseMode::kNone, std::chrono::milliseconds(0), flags, grant);
}

void KernelLeases::Release(uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger) {
  Revoked(gfid, to, linger, 0);
}

bool KernelLeases::IsDirectory(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  return it != files_.end() && it->second.directory;
}

bool KernelLeases::ReleaseKeeping(uint64_t gfid, std::chrono::milliseconds linger) {
  // Nothing to keep, and the next grant would have to release it again.
  if (IsDirectory(gfid)) {
    Release(gfid, LeaseMode::kNone, linger);
    return false;
  }
  if (Revoked(gfid, LeaseMode::kNone, linger, DFUSE_RELEASE_KEEP_PAGES) == 0) return true;
  // What the kernel wrote back did not reach storage (and is discarded):
  // its pages hold data no one else will ever read.
  NotifyKernel(gfid, LeaseMode::kNone, std::chrono::milliseconds(0), 0);
  return false;
}

int KernelLeases::Revoked(uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger,
                          uint32_t flags) {
  // A file's WRITE lease is given up: what it left is handed over. A
  // directory's changes went to storage as they were made, and storage
  // hands over no directory.
  const bool directory = IsDirectory(gfid);
  if (directory) dir_releases_->Add();
  const bool writer = !directory && WriteToken(gfid) != 0;
  // The grant this revoke takes back may have been answered to the kernel
  // after the manager sent the revoke, or not yet: the task that asked for
  // it gets to use it once first, or it would only ask again, and nodes
  // that keep taking a file from each other before either uses it make no
  // progress at all.
  NotifyKernel(gfid, to, linger, flags, agent_->RevokingGrant(gfid));
  ProvenHandoff after;
  const int err =
      WriteBackForRevoke(ctx_.cache, gfid, to, durable_flushes_, writer ? &after : nullptr);
  if (!after.handoff.empty())
    agent_->HandOff(gfid, std::move(after.handoff), std::move(after.proof));
  if (to != LeaseMode::kWrite) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = files_.find(gfid);
    if (it != files_.end()) it->second.token = 0;
  }
  return err;
}

bool KernelLeases::RefreshKept(uint64_t gfid, const std::vector<std::string>& since) {
  ExtentSet written(kMaxRefreshRanges);
  for (const std::string& bytes : since) {
    proto::Handoff handoff;
    if (!handoff.ParseFromString(bytes) || !handoff.written_known()) return false;
    for (const proto::Extent& e : handoff.written()) {
      const bool to_end = e.length() == 0 || e.length() > ExtentSet::kToEnd - e.offset();
      written.Add(e.offset(), to_end ? ExtentSet::kToEnd : e.offset() + e.length());
    }
  }
  // Kept across an upgrade, this daemon's clean copies are dropped whole:
  // the kernel's pages are the cache that matters.
  if (!written.empty()) ctx_.cache->Invalidate(gfid);
  for (const ExtentSet::Range& r : written.ranges()) {
    if (!InvalidatePages(gfid, r.start, r.end)) return false;
  }
  return true;
}

bool KernelLeases::InvalidatePages(uint64_t gfid, uint64_t start, uint64_t end) {
  // The kernel takes a signed offset and length (0: to the end); no page
  // lies beyond INT64_MAX.
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  if (start > kMax) return true;
  fuse_notify_inval_inode_out arg{};
  arg.ino = ctx_.Ino(gfid);
  arg.off = static_cast<int64_t>(start);
  arg.len = end == ExtentSet::kToEnd || end - start > kMax ? 0 : static_cast<int64_t>(end - start);
  const int err = WriteNotify(FUSE_NOTIFY_INVAL_INODE, &arg, sizeof(arg));
  if (err < 0) return true;  // no kernel, no pages
  ranges_invalidated_->Add();
  // ENOENT: the kernel has no inode, hence no pages, for it.
  if (err != 0 && err != ENOENT && err != ENODEV) {
    spdlog::error("dropping kept pages of {:#x}: {}", gfid, std::strerror(err));
    return false;
  }
  return true;
}

bool KernelLeases::HandedOver(uint64_t gfid, proto::Attr* attr) {
  std::string bytes;
  if (!agent_ || !agent_->Handoff(gfid, &bytes)) return false;
  proto::Handoff handed;
  if (!handed.ParseFromString(bytes) || handed.attrs().gfid() != gfid ||
      !S_ISREG(handed.attrs().mode())) {
    return false;
  }
  *attr = std::move(*handed.mutable_attrs());
  attrs_handed_over_->Add();
  return true;
}

void KernelLeases::ChangingOnStorage(uint64_t gfid) {
  if (agent_) agent_->DropHandoff(gfid);
}

void KernelLeases::Forgotten(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(gfid);
  if (it == files_.end() || stopping_) return;  // never asked for a lease
  it->second.forgotten = true;
  reap_queue_.push_back(gfid);
  reap_cv_.notify_all();
}

void KernelLeases::ReaperLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    reap_cv_.wait(l, [this] { return stopping_ || !reap_queue_.empty(); });
    if (stopping_) return;
    const uint64_t gfid = reap_queue_.front();
    reap_queue_.pop_front();
    auto it = files_.find(gfid);
    // Asked for again since the forget: the kernel has a new inode.
    if (it == files_.end() || !it->second.forgotten || it->second.serving > 0) continue;
    it->second.reaping = true;
    l.unlock();
    Reap(gfid);
    l.lock();
    files_.erase(gfid);  // upcalls wait while reaping: nobody used it since
    files_reaped_->Add();
    reap_cv_.notify_all();
  }
}

void KernelLeases::Reap(uint64_t gfid) {
  // The write-back still carries the WRITE lease's token; only then is
  // the lease given back.
  WriteBackForRevoke(ctx_.cache, gfid, LeaseMode::kNone, durable_flushes_);
  agent_->Release(gfid);
}

nlohmann::json KernelLeases::State() {
  std::unique_lock<std::mutex> l = LockForProbe(mu_);
  if (!l.owns_lock()) return {{"error", "the lock is held"}};
  const auto now = Clock::now();
  std::vector<std::pair<Clock::time_point, nlohmann::json>> upcalls;
  for (const auto& [unique, p] : pending_) {
    const auto it = files_.find(p.gfid);
    nlohmann::json u = {
        {"unique", unique},
        {"gfid", fmt::format("{:x}", p.gfid)},
        {"mode", lease::ToString(p.mode)},
        {"age_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - p.since).count()}};
    if (it != files_.end()) {
      u["serving"] = it->second.serving;
      u["reaping"] = it->second.reaping;
      u["directory"] = it->second.directory;
    }
    upcalls.emplace_back(p.since, std::move(u));
  }
  std::sort(upcalls.begin(), upcalls.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  nlohmann::json unanswered = nlohmann::json::array();
  for (auto& [since, u] : upcalls) unanswered.push_back(std::move(u));
  return {{"upcalls_unanswered", std::move(unanswered)},
          {"upcalls_queued", queue_.size()},
          {"workers", workers_.size()},
          {"workers_idle", idle_},
          {"reaps_queued", reap_queue_.size()},
          {"files", files_.size()}};
}

void KernelLeases::Stop() {
  std::vector<std::thread> workers;
  std::vector<uint64_t> files;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    stopping_ = true;
    workers.swap(workers_);
    for (const auto& [gfid, f] : files_) files.push_back(gfid);
  }
  cv_.notify_all();
  reap_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  if (agent_) {
    // Everything is written back: give the leases back rather than make
    // other nodes wait out their term.
    for (uint64_t gfid : files) agent_->Release(gfid);
    agent_->Shutdown();  // ends Acquire calls still waiting
  }
  for (std::thread& t : workers) t.join();
}

}  // namespace dfuse
