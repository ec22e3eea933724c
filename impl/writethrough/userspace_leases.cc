#include "impl/writethrough/userspace_leases.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>

#include <spdlog/spdlog.h>

namespace dfuse {

namespace {

bool Writable(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

// Keeps a lease held for the duration of one request.
struct LeaseHold : ConsistencyPolicy::Hold {
  LeaseGate::Access access;
};

}  // namespace

UserspaceLeases::UserspaceLeases(const PolicyContext& ctx)
    : ctx_(ctx),
      gate_(ctx.cache, ctx.storage,
            [this](uint64_t gfid, bool pages) { InvalidateKernel(gfid, pages); }, ctx.stats),
      cached_getattrs_(ctx.stats->GetCounter("lease.cached_getattrs")) {}

UserspaceLeases::~UserspaceLeases() { Stop(); }

int UserspaceLeases::Start(CachePolicy* cache, std::string* error) {
  // Leases keep caches coherent: the kernel may keep pages across opens,
  // and it asks for attributes before every read it would serve from them
  // (see lease_gate.h). Close still writes back: not for consistency, but
  // because users expect a closed file's data on the storage service.
  cache->keep_cache = true;
  cache->auto_inval_data = true;
  cache->attr_timeout = 0;
  lease::LeaseAgentOptions opts;
  opts.manager = ctx_.lease_manager;
  opts.name = ctx_.node_name;
  opts.emulated_rtt = ctx_.emulated_rtt;
  opts.credentials = ctx_.credentials;
  agent_ = std::make_unique<lease::LeaseAgent>(
      opts, [this](uint64_t gfid, LeaseMode to) { gate_.Revoke(gfid, to); }, ctx_.stats);
  gate_.SetAgent(agent_.get());
  return agent_->Start(ctx_.first_contact, error);
}

void UserspaceLeases::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // The agent's revoke thread calls into the gate; the gate's thread calls
  // into the session. Both stop before the session goes away.
  if (agent_) {
    gate_.ReleaseAll();
    agent_->Shutdown();
  }
  gate_.Stop();
}

void UserspaceLeases::InvalidateKernel(uint64_t gfid, bool pages) {
  fuse_session* se = se_.load();
  if (se == nullptr) return;
  // A negative offset invalidates the attributes only.
  const int err = fuse_lowlevel_notify_inval_inode(se, ctx_.Ino(gfid), pages ? 0 : -1, 0);
  if (err != 0 && err != -ENOENT) spdlog::warn("invalidating {:#x}: {}", gfid, err);
}

int UserspaceLeases::Enter(uint64_t gfid, Access access, std::unique_ptr<Hold>* hold) {
  auto h = std::make_unique<LeaseHold>();
  const int err =
      gate_.Enter(gfid, access == Access::kWrite ? LeaseMode::kWrite : LeaseMode::kRead, &h->access);
  if (err != 0) return err;
  if (access == Access::kRead) gate_.ReadStarting(h->access);
  *hold = std::move(h);
  return 0;
}

void UserspaceLeases::WriteDone(uint64_t gfid, uint64_t end) {
  // Once written back the bytes count in storage's size, not the cache's:
  // the cached attributes must already include them.
  if (end > 0) attrs_.Grow(gfid, end);
  gate_.EndWrite(gfid);
}

int UserspaceLeases::GetAttr(uint64_t gfid, const std::function<int(proto::Attr*)>& fetch,
                             proto::Attr* attr, std::unique_ptr<Hold>* hold) {
  // The kernel asks for attributes before every read(2) it could serve
  // from its cache: drop what an earlier revoke left there first, then read
  // size and mtime under the lease, from storage once per epoch.
  auto h = std::make_unique<LeaseHold>();
  int err = gate_.EnterForAttributes(gfid, &h->access);
  if (err != 0) return err;
  const uint64_t epoch = h->access.epoch();
  if (attrs_.Get(gfid, epoch, attr)) {
    cached_getattrs_->Add();
    *hold = std::move(h);
    return 0;
  }
  const uint64_t writes = attrs_.Writes(gfid);
  if ((err = fetch(attr)) != 0) return err;
  // Only a size that already counts this node's buffered bytes is cached.
  if (ctx_.cache->LocalSize(gfid, attr->size()) == attr->size()) {
    attrs_.Put(gfid, epoch, *attr, writes);
  }
  *hold = std::move(h);
  return 0;
}

void UserspaceLeases::Opened(uint64_t gfid, int flags) {
  if (Writable(flags)) gate_.OpenedForWrite(gfid);
}

void UserspaceLeases::Closed(uint64_t gfid, int flags) {
  if (Writable(flags)) gate_.ClosedForWrite(gfid);
}

void UserspaceLeases::Observed(const proto::Attr& attr, bool own, bool) {
  if (own && S_ISREG(attr.mode())) attrs_.Forget(attr.gfid());  // this node changed them
}

int UserspaceLeases::LinkCountChanged(uint64_t gfid) {
  // Other nodes answer GETATTRs of the file from their leased attributes.
  // Taking the WRITE lease revokes theirs, as a CephFS MDS revokes link
  // capabilities, so no node reports the old link count after the reply.
  std::unique_ptr<Hold> hold;
  const int err = Enter(gfid, Access::kWrite, &hold);
  if (err != 0) spdlog::warn("link count of {:#x} changed, others not told: {}", gfid, err);
  attrs_.Forget(gfid);
  return err;
}

void UserspaceLeases::Forgotten(uint64_t gfid) {
  attrs_.Drop(gfid);
  gate_.Forget(gfid);
}

}  // namespace dfuse
