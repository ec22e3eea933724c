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
      gate_(
          ctx.cache,
          [this](uint64_t gfid, int64_t offset, int64_t length) {
            InvalidateKernel(gfid, offset, length);
          },
          ctx.stats),
      cached_getattrs_(ctx.stats->GetCounter("lease.cached_getattrs")) {}

UserspaceLeases::~UserspaceLeases() { Stop(); }

int UserspaceLeases::Start(CachePolicy* cache, std::string* error) {
  // Leases keep caches coherent: the kernel may keep pages across opens,
  // and it asks for attributes before a read it would serve from them
  // whenever a revoke or a write has dropped its own (see lease_gate.h;
  // other replies' attributes are not trusted beyond the moment). Close
  // still writes back: not for consistency, but because users expect a
  // closed file's data on the storage service.
  cache->keep_cache = true;
  cache->auto_inval_data = true;
  cache->attr_timeout = 0;
  lease::LeaseAgentOptions opts;
  opts.manager = ctx_.lease_manager;
  opts.name = ctx_.node_name;
  opts.emulated_rtt = ctx_.emulated_rtt;
  opts.credentials = ctx_.credentials;
  opts.before_upgrade = [this](uint64_t gfid, uint64_t) { gate_.KeepForUpgrade(gfid); };
  opts.lingers = cache->linger;
  agent_ = std::make_unique<lease::LeaseAgent>(
      opts,
      [this](uint64_t gfid, LeaseMode to, std::chrono::milliseconds linger) {
        gate_.Revoke(gfid, to, linger);
      },
      ctx_.stats);
  gate_.SetAgent(agent_.get());
  return agent_->Start(ctx_.first_contact, error);
}

void UserspaceLeases::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // The agent's revoke threads call into the gate; the gate's thread calls
  // into the session. Both stop before the session goes away.
  if (agent_) {
    gate_.ReleaseAll();
    agent_->Shutdown();
  }
  gate_.Stop();
}

void UserspaceLeases::InvalidateKernel(uint64_t gfid, int64_t offset, int64_t length) {
  fuse_session* se = se_.load();
  if (se == nullptr) return;
  const int err = fuse_lowlevel_notify_inval_inode(se, ctx_.Ino(gfid), offset, length);
  if (err != 0 && err != -ENOENT) spdlog::warn("invalidating {:#x}: {}", gfid, err);
}

int UserspaceLeases::Enter(uint64_t gfid, Access access, std::unique_ptr<Hold>* hold) {
  auto h = std::make_unique<LeaseHold>();
  const int err =
      gate_.Enter(gfid, access == Access::kWrite ? LeaseMode::kWrite : LeaseMode::kRead, &h->access);
  if (err != 0) return err;
  *hold = std::move(h);
  return 0;
}

int UserspaceLeases::EnterRead(uint64_t gfid, const Io& io, std::unique_ptr<Hold>* hold) {
  const int err = Enter(gfid, Access::kRead, hold);
  if (err != 0) return err;
  gate_.ReadStarting(static_cast<LeaseHold*>(hold->get())->access, io.offset, io.length);
  return 0;
}

void UserspaceLeases::WriteDone(uint64_t gfid, const Io& io) {
  // Once written back the bytes count in storage's size, not the cache's:
  // the cached attributes must already include them.
  if (io.length > 0) attrs_.Grow(gfid, io.offset + io.length);
  gate_.EndWrite(gfid, io.task, io.offset, io.length);
}

int UserspaceLeases::GetAttr(uint64_t gfid, const std::function<int(proto::Attr*)>& fetch,
                             proto::Attr* attr, double* timeout, std::unique_ptr<Hold>* hold) {
  // The kernel asks for attributes before a read(2) it could serve from
  // its cache whenever the ones it has are not valid: drop what an earlier
  // revoke left there first, then read size and mtime under the lease,
  // from storage once per epoch.
  auto h = std::make_unique<LeaseHold>();
  int err = gate_.EnterForAttributes(gfid, &h->access);
  if (err != 0) return err;
  const uint64_t epoch = h->access.epoch();
  if (attrs_.Get(gfid, epoch, attr)) {
    cached_getattrs_->Add();
  } else {
    const uint64_t writes = attrs_.Writes(gfid);
    if ((err = fetch(attr)) != 0) return err;
    // Only a size that already counts this node's buffered bytes is cached.
    if (ctx_.cache->LocalSize(gfid, attr->size()) == attr->size()) {
      attrs_.Put(gfid, epoch, *attr, writes);
    }
  }
  // The kernel may keep these, and serve read(2)s from its pages without
  // asking again, for as long as the lease is trusted: every revoke drops
  // them before its ack (LeaseGate::Revoke), and the kernel discards a
  // reply that a revoke's invalidation overtook (it counts attribute
  // versions). As the paper's WT+OCC, reads under a held lease then cost
  // no round trip at all.
  *timeout = std::chrono::duration<double>(agent_->TrustedFor()).count();
  *hold = std::move(h);
  return 0;
}

void UserspaceLeases::BeforeEntryReply(proto::Attr* attr) {
  const uint64_t gfid = attr->gfid();
  gate_.WaitWritesDone(gfid);
  // While the lease is held, GETATTRs answer the attributes cached under it,
  // whose mtime does not move with this node's writes. An entry straight
  // from storage would tell the kernel a newer mtime, the next GETATTR the
  // older one again, and each change drops the file's pages: a reopen would
  // read the whole file again over FUSE. A revoke after this check is no
  // harm: it drops the kernel's attributes, which makes the kernel ignore
  // this reply's (it counts attribute versions).
  LeaseGate::Access access;
  if (!gate_.TryEnter(gfid, LeaseMode::kRead, &access)) return;
  proto::Attr cached;
  if (attrs_.Get(gfid, access.epoch(), &cached)) *attr = cached;
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
