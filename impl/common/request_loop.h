// A multi-threaded FUSE request loop that shows the daemon every raw
// request before libfuse3 sees it. Modes that extend the FUSE protocol
// (kernel leases, ARCHITECTURE.md section 6) take their own opcodes out;
// stock libfuse3 serves everything else, unchanged.
#ifndef DFUSE_IMPL_COMMON_REQUEST_LOOP_H_
#define DFUSE_IMPL_COMMON_REQUEST_LOOP_H_

#include <linux/fuse.h>

#include <cstddef>
#include <functional>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

namespace dfuse {

// Returns true if it took the request (and will answer it itself). `arg`
// is the request's payload after the header, `size` bytes. Called
// concurrently from every loop thread.
using RequestInterceptor =
    std::function<bool(const fuse_in_header& header, const char* arg, size_t size)>;

// Serves `se` on `threads` threads until the file system is unmounted or
// fuse_session_exit() is called. Returns 0, or a negative errno if reading
// the device failed.
int RunRequestLoop(fuse_session* se, unsigned threads, const RequestInterceptor& intercept);

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_REQUEST_LOOP_H_
