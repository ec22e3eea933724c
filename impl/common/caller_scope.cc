#include "impl/common/caller_scope.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace dfuse {
namespace {

thread_local const std::optional<Caller>* current = nullptr;

std::optional<Caller>& ProcessDefault() {
  static std::optional<Caller> caller =
      Caller{static_cast<uint32_t>(::geteuid()), static_cast<uint32_t>(::getegid()), {}};
  return caller;
}

constexpr auto kGroupsLifetime = std::chrono::seconds(1);

}  // namespace

CallerScope::CallerScope(std::optional<Caller> caller)
    : caller_(std::move(caller)), outer_(current) {
  current = &caller_;
}

CallerScope::~CallerScope() { current = outer_; }

const std::optional<Caller>& CallerScope::Current() {
  return current != nullptr ? *current : ProcessDefault();
}

void CallerScope::SetProcessDefault(std::optional<Caller> caller) {
  ProcessDefault() = std::move(caller);
}

Caller RequestCallers::Of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  Caller caller{ctx->uid, ctx->gid, {}};
  if (ctx->uid == 0 || ctx->pid == 0) return caller;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = by_pid_.find(ctx->pid);
    if (it != by_pid_.end() && it->second.expiry > now && it->second.caller.uid == caller.uid &&
        it->second.caller.gid == caller.gid) {
      return it->second.caller;
    }
  }
  std::vector<gid_t> groups(64);
  int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  if (n > static_cast<int>(groups.size())) {
    groups.resize(static_cast<size_t>(n));
    n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  }
  // A process gone, or /proc unreadable: its own group only.
  for (int i = 0; i < std::min<int>(n, static_cast<int>(kMaxCallerGroups)); i++) {
    if (groups[static_cast<size_t>(i)] != caller.gid)
      caller.groups.push_back(groups[static_cast<size_t>(i)]);
  }
  std::lock_guard<std::mutex> l(mu_);
  if (by_pid_.size() >= kMaxEntries) by_pid_.clear();
  by_pid_[ctx->pid] = Entry{caller, now + kGroupsLifetime};
  return caller;
}

bool IsKernelThread(pid_t pid) {
  if (pid <= 0) return pid == 0;
  // /proc/PID/stat: "pid (comm) state ppid ..."; flags is the 9th field,
  // the 7th after the comm, which may itself hold spaces and parentheses.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return false;
  std::istringstream fields(stat.substr(comm_end + 1));
  std::string field;
  unsigned long flags = 0;
  for (int i = 0; i < 7 && fields >> field; i++) {
    if (i == 6) flags = std::strtoul(field.c_str(), nullptr, 10);
  }
  constexpr unsigned long kPfKthread = 0x00200000;  // PF_KTHREAD
  return (flags & kPfKthread) != 0;
}

void FileWriters::Opened(uint64_t gfid, const std::optional<Caller>& caller) {
  if (!caller) return;
  std::lock_guard<std::mutex> l(mu_);
  by_gfid_[gfid] = *caller;
}

std::optional<Caller> FileWriters::Of(uint64_t gfid) const {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = by_gfid_.find(gfid);
    if (it != by_gfid_.end()) return it->second;
  }
  return CallerScope::Current();
}

void FileWriters::Forget(uint64_t gfid) {
  std::lock_guard<std::mutex> l(mu_);
  by_gfid_.erase(gfid);
}

}  // namespace dfuse
