// Fuzzes the dfuse daemon's handling of what dfuse.ko sends it: DFUSE_LEASE
// requests with any payload (short, bad modes, any flags and ranges),
// FUSE_INTERRUPTs of them and of requests it never saw, other opcodes, and
// forgets, mixed with another node taking the same files (which makes the
// daemon release them: DFUSE_NOTIFY_RELEASE) and link-count changes. A
// socket stands in for /dev/dfuse and a real lease manager runs in-process.
//
// An input is a sequence of [selector byte][length byte][payload] records
// (records.h). The selector's low 3 bits pick the kind of record, its high
// 5 bits the inode: 0 and 1 pass unchanged (no inode, the root), the others
// move into a range of their own for this input.
//
// Every input must end with: each DFUSE_LEASE answered exactly once, with
// the requested mode, EINVAL if malformed, EINTR only if it was interrupted
// and interruptible, or another errno; nothing answered that was not asked
// or twice; Intercept() taking exactly the lease requests and the
// interrupts of pending ones; and every release notify well-formed.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "impl/dfuse/kernel_leases.h"
#include "kernel/dfuse/dfuse_proto.h"
#include "lease/manager_service.h"
#include "tests/fuzz/records.h"
#include "tests/support/no_backend.h"

namespace dfuse {
namespace {

using lease::LeaseMode;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRecords = 48;

enum Kind : uint8_t {
  kLease = 0,         // a DFUSE_LEASE with the payload as its argument
  kLeaseToo = 1,      // the same (lease requests are most of what comes)
  kInterruptOne = 2,  // a FUSE_INTERRUPT of this input's n-th lease request
  kInterruptRaw = 3,  // a FUSE_INTERRUPT with the payload as its argument
  kForget = 4,        // the kernel forgot the inode
  kLinkCount = 5,     // this node changed the inode's link count
  kOtherNode = 6,     // another node takes the inode (READ or WRITE)
  kOtherOpcode = 7,   // any other opcode: libfuse's to serve
};

using test::NoBackend;  // releases have nothing to write back

// What one input asked and what must come back for it.
struct Request {
  bool well_formed = false;
  uint32_t mode = 0;
  bool interruptible = false;
  bool interrupted = false;
  bool attr_allowed = false;  // asked for DFUSE_LEASE_ATTR, on a file
};

struct Daemon {
  StatsRegistry stats;
  NoBackend backend;
  std::unique_ptr<lease::ManagerServer> manager;
  std::unique_ptr<BufferCache> cache;
  std::unique_ptr<StorageClient> storage;
  std::unique_ptr<KernelLeases> leases;
  std::unique_ptr<lease::LeaseAgent> other;
  int device[2] = {-1, -1};  // [0]: the daemon's end, [1]: the "kernel"'s
};

Daemon* node = nullptr;  // the daemon under test
uint64_t input_number = 0;
uint64_t next_unique = 1;  // the kernel never reuses a pending unique

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_kernel_upcalls: %s\n", what.c_str());
  std::abort();
}

void SetUpOnce() {
  spdlog::set_level(spdlog::level::off);
  node = new Daemon;
  lease::ManagerOptions o;
  o.epoch = 1;
  o.term_ms = 2000;
  o.min_hold_ms = 0;
  std::string error;
  node->manager = lease::ManagerServer::Start(o, &error);
  if (!node->manager) Fail(error);
  const std::string address = "127.0.0.1:" + std::to_string(node->manager->port());
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, node->device) != 0) Fail("socketpair");
  node->cache = std::make_unique<BufferCache>(BufferCacheOptions{}, &node->backend, &node->stats);
  node->storage =
      std::make_unique<StorageClient>(StorageClientOptions{"127.0.0.1:1"}, &node->stats);
  PolicyContext ctx;
  ctx.cache = node->cache.get();
  ctx.storage = node->storage.get();
  ctx.stats = &node->stats;
  ctx.lease_manager = address;
  ctx.node_name = "fuzzed-node";
  node->leases = std::make_unique<KernelLeases>(ctx);
  CachePolicy cache_policy;
  if (node->leases->Start(&cache_policy, &error) != 0) Fail(error);
  // The core's GETATTR answer: a file for odd GFIDs, a failure (or, for
  // multiples of 4, a directory) for the others.
  node->leases->ServeAttrsFrom([](uint64_t gfid, struct stat* st, double* timeout) {
    if (gfid % 2 == 0 && gfid % 4 != 0) return EIO;
    st->st_mode = (gfid % 2 == 1 ? S_IFREG : S_IFDIR) | 0644;
    st->st_size = static_cast<off_t>(gfid);
    *timeout = static_cast<double>(gfid % 7) + 0.25;
    return 0;
  });
  node->leases->AttachFd(node->device[0]);

  lease::LeaseAgentOptions other;
  other.manager = address;
  other.name = "other-node";
  node->other = std::make_unique<lease::LeaseAgent>(
      other, [](uint64_t, LeaseMode, std::chrono::milliseconds) {}, &node->stats);
  if (node->other->Start(std::chrono::milliseconds(5000), &error) != 0) Fail(error);
  // libFuzzer ends with exit(): stop the threads before what they use goes.
  std::atexit([] {
    node->other.reset();
    node->leases.reset();
    node->manager.reset();
  });
}

uint64_t Inode(uint8_t selector) {
  const uint64_t n = selector >> 3;
  return n < 2 ? n : (input_number << 8) + 16 + n;
}

// Whether this or an earlier input used `inode`. A release may come after
// the input that caused it: an interrupted upgrade from READ to WRITE goes
// on, and the daemon's own READ is released for it.
bool Used(uint64_t inode) {
  if (inode < 2) return true;
  const uint64_t input = (inode - 16) >> 8, n = (inode - 16) & 0xff;
  return inode >= 16 && input >= 1 && input <= input_number && n >= 2 && n < 32;
}

// Checks one message the daemon wrote to the device. An answer takes its
// request out of `asked`.
void CheckMessage(const char* buf, size_t n, std::map<uint64_t, Request>* asked) {
  fuse_out_header h{};
  if (n < sizeof(h)) Fail("a message shorter than its header");
  std::memcpy(&h, buf, sizeof(h));
  if (h.len != n) Fail("a header's len is not the message's size");
  if (h.unique == 0) {  // a notify: only releases of inodes this input used
    dfuse_notify_release_out r{};
    if (h.error != DFUSE_NOTIFY_RELEASE || n != sizeof(h) + sizeof(r)) Fail("a bad notify");
    std::memcpy(&r, buf + sizeof(h), sizeof(r));
    if (!Used(r.nodeid)) Fail("a release of inode " + std::to_string(r.nodeid) + " never used");
    if (r.mode > DFUSE_LEASE_READ) Fail("a release to WRITE");
    // dfuse_lease_release()'s rule: both flags only on a release to NONE;
    // an upgrade's release names the READ grant it gives up and never lingers.
    const bool upgrade = (r.flags & DFUSE_RELEASE_UPGRADE) != 0;
    if ((r.flags & ~(DFUSE_RELEASE_KEEP_PAGES | DFUSE_RELEASE_UPGRADE)) != 0 ||
        (r.flags != 0 && r.mode != DFUSE_LEASE_NONE) || r.linger_ms > DFUSE_LINGER_MAX_MS ||
        (upgrade && (r.grant == 0 || r.linger_ms != 0))) {
      Fail("a release dfuse.ko refuses (flags " + std::to_string(r.flags) + ")");
    }
    return;
  }
  auto it = asked->find(h.unique);
  if (it == asked->end()) Fail("an answer to a request never made, or a second answer");
  const Request& r = it->second;
  if (!r.well_formed) {
    if (h.error != -EINVAL) Fail("a malformed lease request not refused with EINVAL");
  } else if (h.error == 0) {
    dfuse_lease_out out{};
    if (n != sizeof(h) + sizeof(out)) Fail("a grant without its mode");
    std::memcpy(&out, buf + sizeof(h), sizeof(out));
    if (out.mode != r.mode) Fail("a grant of another mode than asked");
    if ((out.flags & ~DFUSE_LEASE_ATTR) != 0) Fail("a grant with unknown flags");
    if ((out.flags & DFUSE_LEASE_ATTR) != 0 &&
        (!r.attr_allowed || !S_ISREG(out.attr.mode) || out.attr_valid_nsec >= 1000000000u)) {
      Fail("attributes with a grant that the kernel did not ask for, or not a file's");
    }
  } else if (h.error == -EINTR) {
    if (!r.interrupted || !r.interruptible) Fail("EINTR for a request not interrupted");
  } else if (h.error >= 0 || h.error < -4095 || n != sizeof(h)) {
    Fail("an answer that is neither a grant nor an errno");
  }
  asked->erase(it);
}

void Drain(std::map<uint64_t, Request>* asked) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  char buf[512];
  while (true) {
    const bool done = asked->empty();
    const int wait_ms = done ? 0 : 100;
    pollfd p{node->device[1], POLLIN, 0};
    if (poll(&p, 1, wait_ms) == 1) {
      const ssize_t n = read(node->device[1], buf, sizeof(buf));
      if (n < 0) Fail("reading the device");
      CheckMessage(buf, static_cast<size_t>(n), asked);
      continue;
    }
    if (done) return;
    if (Clock::now() > deadline) Fail("a lease request never answered");
  }
}

}  // namespace
}  // namespace dfuse

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dfuse::SetUpOnce();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dfuse;
  input_number++;
  std::map<uint64_t, Request> asked;  // by unique
  std::vector<uint64_t> order;        // this input's lease requests in order
  std::set<uint64_t> inodes;
  std::set<uint64_t> others;  // inodes the other node took
  fuzz::ForEachRecord(data, size, kMaxRecords, [&](uint8_t selector, std::string_view bytes) {
    const uint64_t inode = Inode(selector);
    fuse_in_header h{};
    h.nodeid = inode;
    h.unique = next_unique++;
    switch (static_cast<Kind>(selector & 7)) {
      case kLease:
      case kLeaseToo: {
        dfuse_lease_in in{};
        std::memcpy(&in, bytes.data(), std::min(bytes.size(), sizeof(in)));
        Request r;
        r.well_formed = bytes.size() >= sizeof(in) &&
                        (in.mode == DFUSE_LEASE_READ || in.mode == DFUSE_LEASE_WRITE);
        r.mode = in.mode;
        r.interruptible = (in.flags & DFUSE_LEASE_NOINTR) == 0;
        r.attr_allowed = (in.flags & DFUSE_LEASE_ATTR) != 0 && (in.flags & DFUSE_LEASE_DIR) == 0;
        asked[h.unique] = r;
        order.push_back(h.unique);
        inodes.insert(inode);
        h.opcode = DFUSE_LEASE;
        if (!node->leases->Intercept(h, bytes.data(), bytes.size())) {
          Fail("a lease request left to libfuse");
        }
        break;
      }
      case kInterruptOne:
      case kInterruptRaw: {
        fuse_interrupt_in in{};
        size_t len = bytes.size();
        const bool one = (selector & 7) == kInterruptOne && !order.empty() && !bytes.empty();
        if (one) {
          in.unique = order[static_cast<uint8_t>(bytes[0]) % order.size()];
          len = sizeof(in);
        } else {
          std::memcpy(&in, bytes.data(), std::min(bytes.size(), sizeof(in)));
        }
        h.opcode = FUSE_INTERRUPT;
        const char* arg = one ? reinterpret_cast<const char*>(&in) : bytes.data();
        const bool taken = node->leases->Intercept(h, arg, len);
        // A taken interrupt answers its request at once if interruptible;
        // one that is not taken belongs to libfuse: no request of ours is
        // pending under that unique (answered, or never asked).
        auto it = asked.find(in.unique);
        if (taken && (len < sizeof(in) || it == asked.end())) {
          Fail("an interrupt taken for a request the daemon does not have");
        }
        if (taken && it->second.well_formed) it->second.interrupted = true;
        break;
      }
      case kForget:
        node->leases->Forgotten(inode);
        break;
      case kLinkCount:
        inodes.insert(inode);
        node->leases->LinkCountChanged(inode);  // an errno is logged, not fatal
        break;
      case kOtherNode: {
        uint64_t token = 0;
        const LeaseMode mode =
            !bytes.empty() && (bytes[0] & 1) ? LeaseMode::kWrite : LeaseMode::kRead;
        inodes.insert(inode);
        // Releases the daemon's lease first: its notify goes to the device
        // and is checked when drained.
        if (node->other->Acquire(inode, mode, &token) == 0) others.insert(inode);
        break;
      }
      case kOtherOpcode: {
        uint32_t opcode = 0;
        std::memcpy(&opcode, bytes.data(), std::min(bytes.size(), sizeof(opcode)));
        if (opcode == DFUSE_LEASE || opcode == FUSE_INTERRUPT) opcode = FUSE_READ;
        h.opcode = opcode;
        if (node->leases->Intercept(h, bytes.data(), bytes.size())) {
          Fail("a request of another opcode taken from libfuse");
        }
        break;
      }
    }
  });
  Drain(&asked);
  // The kernel forgets every inode: the daemon gives their leases back, and
  // the other node lets go of what it took.
  for (uint64_t inode : inodes) node->leases->Forgotten(inode);
  for (uint64_t inode : others) node->other->Release(inode);
  return 0;
}
