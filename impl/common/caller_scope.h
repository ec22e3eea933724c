// The user a client's storage calls act for (util/caller.h). A FUSE
// operation opens a CallerScope for the user whose request it serves; every
// StorageClient call the thread makes meanwhile names that user. Outside a
// scope calls act for the process default: the process's own user, unless
// SetProcessDefault says otherwise (the client daemon makes its own calls
// name no user: they act for the export rule's anonymous user).
#ifndef DFUSE_IMPL_COMMON_CALLER_SCOPE_H_
#define DFUSE_IMPL_COMMON_CALLER_SCOPE_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "util/caller.h"

namespace dfuse {

class CallerScope {
 public:
  // nullopt: the calls name no user.
  explicit CallerScope(std::optional<Caller> caller);
  ~CallerScope();
  CallerScope(const CallerScope&) = delete;
  CallerScope& operator=(const CallerScope&) = delete;

  // The innermost scope's user on this thread, else the process default.
  static const std::optional<Caller>& Current();
  // Sets the process default; call before any thread makes storage calls.
  static void SetProcessDefault(std::optional<Caller> caller);

 private:
  std::optional<Caller> caller_;
  const std::optional<Caller>* outer_;
};

// The user each FUSE request comes from, with the supplementary groups of
// its process. libfuse reads those from /proc, so they are kept per process
// for a second: a process that changes its groups is seen so within one.
// Root's requests carry no groups (root needs none, and a squashed root
// gets none).
class RequestCallers {
 public:
  Caller Of(fuse_req_t req);

 private:
  struct Entry {
    Caller caller;
    std::chrono::steady_clock::time_point expiry;
  };
  static constexpr size_t kMaxEntries = 4096;

  std::mutex mu_;
  std::unordered_map<pid_t, Entry> by_pid_;  // guarded by mu_
};

// Whether `pid` is a kernel thread (a request the kernel made on its own,
// such as writing a file's times back). Reads /proc: for rare requests only.
bool IsKernelThread(pid_t pid);

// Who each file's data is written back as: the user who last opened it for
// writing. Write-back happens after the writer's request (the kernel's
// writeback of dirty pages carries no user; the buffer cache flushes from
// its own thread, also after the kernel forgot the file), so a file keeps
// its writer until the buffer cache dropped it (CacheBackend::Dropped).
class FileWriters {
 public:
  void Opened(uint64_t gfid, const std::optional<Caller>& caller);
  // The file's writer, or the thread's current caller if none is known.
  std::optional<Caller> Of(uint64_t gfid) const;
  void Forget(uint64_t gfid);

 private:
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Caller> by_gfid_;  // guarded by mu_
};

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_CALLER_SCOPE_H_
