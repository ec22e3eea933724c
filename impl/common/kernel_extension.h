// What a mode that extends the kernel's FUSE protocol adds to the shared
// client daemon: dfuse's kernel-level leases (impl/dfuse/kernel_leases.h).
// The daemon mounts the extension's device itself, runs its own request
// loop, and passes every raw request through Intercept() first.
#ifndef DFUSE_IMPL_COMMON_KERNEL_EXTENSION_H_
#define DFUSE_IMPL_COMMON_KERNEL_EXTENSION_H_

#include <linux/fuse.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "impl/common/buffer_cache.h"
#include "impl/common/storage_client.h"
#include "util/stats.h"

namespace dfuse {

// What the daemon gives the extension; everything outlives it.
struct KernelExtensionContext {
  BufferCache* cache = nullptr;
  StorageClient* storage = nullptr;
  StatsRegistry* stats = nullptr;
  std::string lease_manager;  // host:port[,host:port...]
  std::string node_name;
  std::chrono::microseconds emulated_rtt{0};
};

class KernelExtension {
 public:
  virtual ~KernelExtension() = default;

  // Kernel mount options the extension needs (e.g. "leases").
  virtual std::vector<std::string> MountOptions() const = 0;
  // Before mounting: connect to the services it needs. 0 or an errno with
  // a one-line *error.
  virtual int Start(std::string* error) = 0;
  // Mounted: requests and notifications use this session's descriptor.
  virtual void Attach(fuse_session* se) = 0;
  // See RequestInterceptor (request_loop.h).
  virtual bool Intercept(const fuse_in_header& header, const char* arg, size_t size) = 0;
  // The fencing token for writes of gfid to storage (0: none).
  virtual uint64_t WriteToken(uint64_t gfid) = 0;
  // Unmounted and written back: give back what is held, stop threads.
  virtual void Shutdown() = 0;
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_KERNEL_EXTENSION_H_
