// Where the client modes differ in keeping nodes consistent (ARCHITECTURE.md
// section 7). The client core (client_fs.h) calls one ConsistencyPolicy at
// every point where modes differ; each impl/* directory implements its own:
//
//   impl/writethrough/userspace_leases.h  leases held by this daemon
//   impl/dfuse/kernel_leases.h            leases held by dfuse.ko
//   impl/weakwriteback/writeback_close_to_open.h
//                                         close-to-open, kernel write-back
//   close_to_open.h (here)                close-to-open, write-through
//                                         (writethrough without a lease
//                                         manager)
//
// Every hook has a default that does nothing, so a policy overrides only
// the points it cares about.
#ifndef DFUSE_IMPL_COMMON_CONSISTENCY_H_
#define DFUSE_IMPL_COMMON_CONSISTENCY_H_

#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <grpcpp/security/credentials.h>

#include "impl/common/buffer_cache.h"
#include "impl/common/policy.h"
#include "impl/common/storage_client.h"
#include "proto/storage.pb.h"
#include "util/stats.h"

namespace dfuse {

// FUSE's root nodeid is fixed at 1; every other nodeid is the file's GFID.
inline fuse_ino_t NodeIdOf(uint64_t gfid, uint64_t root_gfid) {
  return gfid == root_gfid ? FUSE_ROOT_ID : gfid;
}
inline uint64_t GfidOf(fuse_ino_t ino, uint64_t root_gfid) {
  return ino == FUSE_ROOT_ID ? root_gfid : ino;
}

// What the daemon gives a policy; everything outlives it.
struct PolicyContext {
  BufferCache* cache = nullptr;
  StorageClient* storage = nullptr;
  StatsRegistry* stats = nullptr;
  uint64_t root_gfid = 0;     // the kernel calls it FUSE_ROOT_ID
  std::string lease_manager;  // host:port[,host:port...], empty if none was given
  std::string node_name;
  std::chrono::microseconds emulated_rtt{0};
  // How long the lease manager may take to answer the first contact (as the
  // storage service's: a loaded machine is waited for, a wrong address is
  // reported after this long).
  std::chrono::milliseconds first_contact{5000};
  // For the lease manager's channel (util/tls.h).
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();

  // The kernel's nodeid of a file and back (NodeIdOf).
  fuse_ino_t Ino(uint64_t gfid) const { return NodeIdOf(gfid, root_gfid); }
  uint64_t Gfid(fuse_ino_t ino) const { return GfidOf(ino, root_gfid); }
};

// What a change to a file's data on storage carries: the fencing token of
// the writer's lease and its proof of origin.
struct Fence {
  uint64_t token = 0;
  std::string proof;
};

class ConsistencyPolicy {
 public:
  // What a policy keeps held while the core serves one request from cached
  // state (a lease that must not be revoked meanwhile); given back when
  // destroyed.
  class Hold {
   public:
    virtual ~Hold() = default;
  };

  enum class Access { kRead, kWrite };

  // The bytes a READ or WRITE request covers and the thread that sent it
  // (the kernel sends a write(2)'s requests from the writing thread).
  struct Io {
    pid_t task = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
  };

  virtual ~ConsistencyPolicy() = default;

  // ---- Lifecycle, in the order the daemon calls it.

  // Connects to what the policy needs (a lease manager) and adjusts the
  // kernel cache settings it runs with. Returns 0 or an errno with a
  // one-line *error.
  virtual int Start(CachePolicy* /*cache*/, std::string* /*error*/) { return 0; }
  // Kernel mount options a protocol extension needs (dfuse.ko's "leases").
  virtual std::vector<std::string> MountOptions() const { return {}; }
  // What the core answers a GETATTR of a file with: its attributes and how
  // long the kernel may trust them, in seconds. Returns 0 or an errno.
  using AttrSource = std::function<int(uint64_t gfid, struct stat* st, double* timeout)>;
  // For replies of the policy's own that carry a file's attributes (dfuse.ko's
  // grants); called before Attach, and `source` outlives the policy's use.
  virtual void ServeAttrsFrom(AttrSource /*source*/) {}
  // The session is mounted: notifications (and raw replies) go to it.
  virtual void Attach(fuse_session* /*se*/) {}
  // Sees every raw request first when the daemon runs its own request loop
  // (RequestInterceptor, request_loop.h); true if it took the request.
  virtual bool Intercept(const fuse_in_header& /*header*/, const char* /*arg*/,
                         size_t /*size*/) {
    return false;
  }
  // Unmounted and written back: gives back what is held and stops every
  // thread that could call into the session, which is destroyed next.
  virtual void Stop() {}

  // ---- Hooks of the client core (all on regular files unless said).

  // The fencing token for a change to gfid's data on storage (0: none).
  virtual uint64_t WriteToken(uint64_t /*gfid*/) { return 0; }
  // The proof of origin the lease manager granted with `token` on gfid, ""
  // if none (util/fencing_key.h).
  virtual std::string FenceProof(uint64_t /*gfid*/, uint64_t /*token*/) { return ""; }
  // Both, for a change to gfid's data on storage.
  Fence WriteFence(uint64_t gfid) {
    Fence f{WriteToken(gfid), ""};
    if (f.token != 0) f.proof = FenceProof(gfid, f.token);
    return f;
  }
  // Before a READ (kRead), or a WRITE, truncate, fallocate or attribute
  // change (kWrite): *hold keeps what the request needs until the reply.
  // Returns 0 or an errno for the request.
  virtual int Enter(uint64_t /*gfid*/, Access /*access*/, std::unique_ptr<Hold>* /*hold*/) {
    return 0;
  }
  // Enter(kRead) for a READ of io's bytes.
  virtual int EnterRead(uint64_t gfid, const Io& /*io*/, std::unique_ptr<Hold>* hold) {
    return Enter(gfid, Access::kRead, hold);
  }
  // A write(2), truncate or fallocate by thread `task` is starting (the
  // kernel asks for security.capability first, with no page locked).
  // Returns 0 or an errno.
  virtual int WriteStarting(uint64_t /*gfid*/, pid_t /*task*/) { return 0; }
  // The WRITE, truncate or fallocate entered with kWrite is over; io holds
  // the bytes it put in the buffer cache (length 0 if none: a truncate, a
  // fallocate, a failure).
  virtual void WriteDone(uint64_t /*gfid*/, const Io& /*io*/) {}
  // A GETATTR: `fetch` asks storage. The policy may answer from what it
  // holds, and may let the kernel trust the answer for *timeout seconds
  // (left negative: the mode's attribute timeout); *hold is kept until the
  // reply is sent.
  virtual int GetAttr(uint64_t /*gfid*/, const std::function<int(proto::Attr*)>& fetch,
                      proto::Attr* attr, double* /*timeout*/, std::unique_ptr<Hold>* /*hold*/) {
    return fetch(attr);
  }
  // Storage's attributes of regular file gfid as they are now, if the
  // policy knows them without asking (the lease held brought them from the
  // node that wrote the file last, and this node has not changed it since):
  // a GETATTR then costs storage no round trip.
  virtual bool HandedOver(uint64_t /*gfid*/, proto::Attr* /*attr*/) { return false; }
  // This node is about to change file gfid (any type) on storage, or has
  // just tried to (StorageClient::OnChange): attributes known from before
  // are no longer storage's.
  virtual void ChangingOnStorage(uint64_t /*gfid*/) {}
  // A reply is about to hand the kernel a regular file's attributes in an
  // entry (LOOKUP, MKNOD, LINK, CREATE, a READDIRPLUS entry). The policy may
  // replace *attr with what its GETATTRs answer, so that the kernel is not
  // told two different mtimes (it drops a file's pages on every change).
  virtual void BeforeEntryReply(proto::Attr* /*attr*/) {}
  // The kernel was handed a file (any type) as `name` in directory
  // `parent`: a lookup, create or readdirplus entry.
  virtual void EntryGiven(const proto::Attr& /*attr*/, fuse_ino_t /*parent*/,
                          const std::string& /*name*/) {}
  // OPEN by thread `caller`: may revalidate, set fi->keep_cache, or fail
  // the open (ESTALE makes the VFS look the path up again and retry the
  // open once, from the same thread).
  virtual int Open(uint64_t /*gfid*/, pid_t /*caller*/, fuse_file_info* /*fi*/) { return 0; }
  // A handle was created (open, create) and released again; `flags` are
  // the open flags.
  virtual void Opened(uint64_t /*gfid*/, int /*flags*/) {}
  virtual void Closed(uint64_t /*gfid*/, int /*flags*/) {}
  // Storage replied with a file's attributes (any type). `own`: to this
  // node's own change. `changed_elsewhere`: its data version differs from
  // the one this node last knew, so another node changed it
  // (BufferCache::ObserveVersion).
  virtual void Observed(const proto::Attr& /*attr*/, bool /*own*/, bool /*changed_elsewhere*/) {}
  // This node changed regular file gfid's link count on storage (link,
  // unlink, a rename that replaced it); called before the reply. A policy
  // that caches attributes across nodes makes the others drop theirs.
  // Storage has applied the change: an errno returned here tells the
  // application that other nodes may not see it yet.
  virtual int LinkCountChanged(uint64_t /*gfid*/) { return 0; }
  // The kernel forgot the inode (any type): drop what is kept for it.
  virtual void Forgotten(uint64_t /*gfid*/) {}
};

using PolicyFactory =
    std::function<std::unique_ptr<ConsistencyPolicy>(const PolicyContext& ctx)>;

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_CONSISTENCY_H_
