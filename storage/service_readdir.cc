// ReadDir: directory listing with offsets that stay valid across calls.
//
// Offsets are the backing file system's own d_off cookies from getdents64.
// Each call opens the directory afresh and seeks to the client's cookie, so
// a listing can be resumed at any time, by any server thread, and after a
// restart, and entries added or removed meanwhile do not shift the others.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>
#include <vector>

#include "storage/attr.h"
#include "storage/fd.h"
#include "storage/limits.h"
#include "storage/permission.h"
#include "storage/service.h"
#include "util/gfid.h"

namespace dfuse::storage {

grpc::Status StorageService::ReadDir(Ctx* ctx, const proto::ReadDirRequest* req,
                                     proto::ReadDirReply* reply) {
  const Call call = Begin(kReadDir, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> dir;
  int err = ResolveDir(call, req->gfid(), &dir);
  if (err == 0 && (req->max_entries() == 0 || req->offset() > static_cast<uint64_t>(INT64_MAX))) {
    err = EINVAL;
  }
  if (err == 0) err = Check(call, *dir, kMayRead);
  // Attributes come with handle keys: only for a caller who may also
  // search the directory, as looking the names up would take.
  bool plus = req->plus();
  if (err == 0 && plus && !Privileged(call.caller())) {
    struct stat dst;
    plus = dir->Stat(&dst) == 0 &&
           Permission(call.caller(), dst, kMayExec) == 0;
  }
  Fd fd;
  if (err == 0) {
    fd = Fd(::openat(dir->path_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) err = errno;
  }
  if (err == 0 && ::lseek(fd.get(), static_cast<off_t>(req->offset()), SEEK_SET) < 0) err = errno;
  if (err != 0) {
    reply->set_err(err);
    return Done(kReadDir);
  }

  const uint32_t max_entries = std::min(req->max_entries(), kMaxReadDirEntries);
  const uint32_t shard = table_->shard_id();
  std::vector<char> buf(32 * 1024);  // heap: server threads have small stacks
  for (;;) {
    const ssize_t n = ::getdents64(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) {
      reply->set_eof(true);
      break;
    }
    // getdents may return more entries than fit; the rest are read again
    // from the last returned cookie by the next call.
    for (ssize_t pos = 0; pos < n;) {
      const auto* d = reinterpret_cast<const struct dirent64*>(buf.data() + pos);
      pos += d->d_reclen;
      const std::string_view name(d->d_name);
      proto::DirEntry* e = reply->add_entries();
      e->set_name(name.data(), name.size());
      e->set_type(d->d_type);
      e->set_next_offset(static_cast<uint64_t>(d->d_off));
      if (name == ".") {
        e->set_gfid(dir->gfid());
      } else if (name == "..") {
        // The export root's parent is outside the export: name the root.
        e->set_gfid(dir == table_->root() ? dir->gfid() : MakeGfid(shard, d->d_ino));
      } else if (plus) {
        std::shared_ptr<Node> child;
        struct stat st;
        // An entry removed since getdents, or a mount point, is listed
        // without attributes.
        if (table_->Lookup(*dir, d->d_name, &child, &st) == 0) {
          e->set_gfid(child->gfid());
          FillAttr(st, child->gfid(), child->generation(), e->mutable_attr());
          IssueKey(e->mutable_attr());
        } else {
          e->set_gfid(MakeGfid(shard, d->d_ino));
        }
      } else {
        e->set_gfid(MakeGfid(shard, d->d_ino));
      }
      if (static_cast<uint32_t>(reply->entries_size()) == max_entries) {
        reply->set_err(0);
        return Done(kReadDir);
      }
    }
  }
  if (err != 0) reply->clear_entries();
  reply->set_err(err);
  return Done(kReadDir);
}

}  // namespace dfuse::storage
