#include "impl/common/request_loop.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

namespace dfuse {

namespace {

// One loop thread. Every thread reads the session's one descriptor: a
// reply must be written to the descriptor the request came from, and the
// interceptor answers from its own threads.
int Serve(fuse_session* se, const RequestInterceptor& intercept) {
  fuse_buf buf{};
  int result = 0;
  while (!fuse_session_exited(se)) {
    const int res = fuse_session_receive_buf(se, &buf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {
      if (res < 0 && res != -ENODEV) result = res;
      fuse_session_exit(se);  // unmounted (ENODEV) or broken: end every thread
      break;
    }
    const size_t size = static_cast<size_t>(res);
    if (!(buf.flags & FUSE_BUF_IS_FD) && size >= sizeof(fuse_in_header)) {
      const auto* header = static_cast<const fuse_in_header*>(buf.mem);
      const char* arg = static_cast<const char*>(buf.mem) + sizeof(fuse_in_header);
      if (intercept(*header, arg, size - sizeof(fuse_in_header))) continue;
    }
    fuse_session_process_buf(se, &buf);
  }
  std::free(buf.mem);
  return result;
}

}  // namespace

int RunRequestLoop(fuse_session* se, unsigned threads, const RequestInterceptor& intercept) {
  std::atomic<int> result{0};
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; i++) {
    workers.emplace_back([&] {
      const int r = Serve(se, intercept);
      if (r != 0) result = r;
    });
  }
  const int r = Serve(se, intercept);
  if (r != 0) result = r;
  for (std::thread& t : workers) t.join();
  if (result != 0) spdlog::error("reading FUSE requests failed: errno {}", -result);
  return result;
}

}  // namespace dfuse
