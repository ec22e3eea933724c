// writethrough's consistency policy with a lease manager: leases held by
// this daemon (ARCHITECTURE.md sections 5 and 7). Every READ, WRITE and
// regular-file GETATTR runs under a lease (lease_gate.h), and GETATTRs under
// a held lease are answered from the leased attribute cache
// (leased_attrs.h). The kernel keeps its pages across opens; a revoke drops
// them.
#ifndef DFUSE_IMPL_WRITETHROUGH_USERSPACE_LEASES_H_
#define DFUSE_IMPL_WRITETHROUGH_USERSPACE_LEASES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "impl/common/consistency.h"
#include "impl/writethrough/lease_gate.h"
#include "impl/writethrough/leased_attrs.h"
#include "lease/agent.h"

namespace dfuse {

class UserspaceLeases : public ConsistencyPolicy {
 public:
  explicit UserspaceLeases(const PolicyContext& ctx);
  ~UserspaceLeases() override;
  UserspaceLeases(const UserspaceLeases&) = delete;
  UserspaceLeases& operator=(const UserspaceLeases&) = delete;

  int Start(CachePolicy* cache, std::string* error) override;
  void Attach(fuse_session* se) override { se_.store(se); }
  void Stop() override;

  uint64_t WriteToken(uint64_t gfid) override { return gate_.WriteToken(gfid); }
  std::string FenceProof(uint64_t gfid, uint64_t token) override {
    return agent_ ? agent_->Proof(gfid, token) : "";
  }
  int Enter(uint64_t gfid, Access access, std::unique_ptr<Hold>* hold) override;
  int EnterRead(uint64_t gfid, const Io& io, std::unique_ptr<Hold>* hold) override;
  int WriteStarting(uint64_t gfid, pid_t task) override { return gate_.BeginWrite(gfid, task); }
  void WriteDone(uint64_t gfid, const Io& io) override;
  int GetAttr(uint64_t gfid, const std::function<int(proto::Attr*)>& fetch, proto::Attr* attr,
              double* timeout, std::unique_ptr<Hold>* hold) override;
  void BeforeEntryReply(proto::Attr* attr) override;
  void Opened(uint64_t gfid, int flags) override;
  void Closed(uint64_t gfid, int flags) override;
  void Observed(const proto::Attr& attr, bool own, bool changed_elsewhere) override;
  int LinkCountChanged(uint64_t gfid) override;
  void Forgotten(uint64_t gfid) override;

 private:
  // LeaseGate::KernelInvalidator (called from the gate's thread, which
  // serves no FUSE request, when pages are dropped).
  void InvalidateKernel(uint64_t gfid, int64_t offset, int64_t length);

  const PolicyContext ctx_;
  std::atomic<fuse_session*> se_{nullptr};
  // Declared before the agent, whose revoke handler calls into it.
  LeaseGate gate_;
  LeasedAttrs attrs_;
  std::unique_ptr<lease::LeaseAgent> agent_;
  bool stopped_ = false;
  Counter* const cached_getattrs_;  // GETATTRs answered from attrs_
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_WRITETHROUGH_USERSPACE_LEASES_H_
