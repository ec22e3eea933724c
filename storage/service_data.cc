// Calls on file data: Read, Write, Fsync, Fallocate.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "storage/attr.h"
#include "storage/limits.h"
#include "storage/permission.h"
#include "storage/service.h"

namespace dfuse::storage {
namespace {

constexpr uint64_t kMaxOffset = static_cast<uint64_t>(INT64_MAX);

// Setting a time other than now takes owning the file, as utimensat(2)
// says: a writer who does not own it keeps the time its write set.
int SetWritersMtime(const Caller& caller, int fd, int64_t mtime_ns) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno;
  if (!OwnerOrPrivileged(caller, st)) return 0;
  const struct timespec ts[2] = {{0, UTIME_OMIT}, FromNanos(mtime_ns)};
  return ::futimens(fd, ts) == 0 ? 0 : errno;
}

// The file's size and, optionally, its mtime: together the version a client
// cache compares to tell its own writes from other nodes'.
int FileVersion(int fd, uint64_t* size, int64_t* mtime_ns = nullptr) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno;
  *size = static_cast<uint64_t>(st.st_size);
  if (mtime_ns) *mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return 0;
}

// Reads up to `length` bytes at `offset`, fewer only at end of file.
int ReadFull(int fd, uint64_t offset, uint64_t length, std::string* out) {
  out->resize(length);
  size_t done = 0;
  while (done < length) {
    const ssize_t n =
        ::pread(fd, out->data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out->resize(done);
  return 0;
}

int WriteFull(int fd, uint64_t offset, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    done += static_cast<size_t>(n);
  }
  return 0;
}

// Checks that [offset, offset + length) fits in off_t: EINVAL for an offset
// Linux would see as negative, EFBIG for a range past the largest offset.
int CheckRange(uint64_t offset, uint64_t length) {
  if (offset > kMaxOffset) return EINVAL;
  if (length > kMaxOffset - offset) return EFBIG;
  return 0;
}

}  // namespace

grpc::Status StorageService::Read(Ctx* ctx, const proto::ReadRequest* req,
                                  proto::ReadReply* reply) {
  const Call call = Begin(kRead, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = ResolveData(call, req->gfid(), &node);
  if (err == 0 && static_cast<size_t>(req->extents_size()) > kMaxExtents) err = EINVAL;
  uint64_t total = 0;
  for (int i = 0; err == 0 && i < req->extents_size(); i++) {
    const proto::Extent& e = req->extents(i);
    if (e.offset() > kMaxOffset || e.length() > kMaxIoBytes - total) err = EINVAL;
    total += e.length();
  }
  if (err == 0) err = CheckData(call, *node, kMayRead);
  int fd = -1;
  if (err == 0) err = node->DataFd(false, &fd);
  for (int i = 0; err == 0 && i < req->extents_size(); i++) {
    const proto::Extent& e = req->extents(i);
    // Bytes past the largest offset are past end of file: a short read.
    const uint64_t length = std::min(e.length(), kMaxOffset - e.offset());
    err = ReadFull(fd, e.offset(), length, reply->add_data());
    bytes_read_->Add(reply->data(i).size());
  }
  uint64_t size = 0;
  if (err == 0) err = FileVersion(fd, &size);
  if (err != 0) reply->clear_data();
  reply->set_file_size(size);
  reply->set_err(err);
  return Done(kRead);
}

grpc::Status StorageService::Write(Ctx* ctx, const proto::WriteRequest* req,
                                   proto::WriteReply* reply) {
  const Call call = Begin(kWrite, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  std::unique_lock<std::mutex> fence;
  int err = ResolveData(call, req->gfid(), &node);
  if (err == 0 && static_cast<size_t>(req->chunks_size()) > kMaxExtents) err = EINVAL;
  uint64_t total = 0;
  for (int i = 0; err == 0 && i < req->chunks_size(); i++) {
    const proto::WriteChunk& c = req->chunks(i);
    if (c.data().size() > kMaxIoBytes - total) err = EINVAL;
    if (err == 0) err = CheckRange(c.offset(), c.data().size());
    total += c.data().size();
  }
  // A call without data only carries the writer's times or asks for
  // durability: it needs no more right than fsync(2) and changes no data,
  // so it clears no set-ID bit either.
  const bool data = req->chunks_size() > 0;
  if (err == 0 && data) err = CheckData(call, *node, kMayWrite);
  // Admitted last: a malformed or refused call never raises the file's token.
  int fd = -1;
  if (err == 0) {
    err = Admit(call, node.get(), req->fencing_token(), req->fencing_proof(), &fd, &fence);
  }
  if (err == 0 && data && !Privileged(call.caller())) err = DropPrivileges(fd);
  // Chunks land in order; on an error the earlier ones stay written, as
  // with a short write.
  for (int i = 0; err == 0 && i < req->chunks_size(); i++) {
    fencing_.Changing(node->gfid(), req->chunks(i).offset(),
                      req->chunks(i).offset() + req->chunks(i).data().size(), fence);
    err = WriteFull(fd, req->chunks(i).offset(), req->chunks(i).data());
    if (err == 0) bytes_written_->Add(req->chunks(i).data().size());
  }
  // After the data, which sets mtime to now: the writer's own time wins,
  // as its SETATTR after a write-back would.
  if (err == 0 && req->has_mtime_ns()) err = SetWritersMtime(call.caller(), fd, req->mtime_ns());
  // The version this call made, read before a later writer is admitted:
  // the client takes it as its own and would miss that writer's change.
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  if (fd >= 0 && FileVersion(fd, &size, &mtime_ns) == 0) {
    reply->set_file_size(size);
    reply->set_mtime_ns(mtime_ns);
  }
  // A holder's write-back before it lets go: what it leaves the file as,
  // for the next holder, taken before a later writer is admitted too.
  if (err == 0 && req->durable() && req->fencing_token() != 0) HandOff(*node, *req, fence, reply);
  // Durability needs no fence: the data is in place, and syncing a later
  // writer's with it does no harm. Outside the lock, files that share its
  // stripe do not wait for this file's fsync.
  if (fence.owns_lock()) fence.unlock();
  if (err == 0 && req->durable()) err = MakeDurable(fd, /*datasync=*/false);
  reply->set_err(err);
  return Done(kWrite);
}

void StorageService::HandOff(const Node& node, const proto::WriteRequest& req,
                             const std::unique_lock<std::mutex>& fence, proto::WriteReply* reply) {
  proto::Handoff handoff;
  proto::Attr* attr = handoff.mutable_attrs();
  if (Stat(node, attr) != 0) return;  // the next holder asks for them itself
  // The manager passes them to whoever asks for the lease: never the key,
  // which only a permitted lookup gives (storage/handle_secret.h).
  attr->clear_handle_key();
  std::vector<ExtentSet::Range> written;
  if (fencing_.Written(node.gfid(), req.fencing_token(), &written, fence)) {
    handoff.set_written_known(true);
    for (const ExtentSet::Range& r : written) {
      proto::Extent* e = handoff.add_written();
      e->set_offset(r.start);
      e->set_length(r.end == ExtentSet::kToEnd ? 0 : r.end - r.start);
    }
  }
  std::string bytes = handoff.SerializeAsString();
  if (fencing_key_) {
    reply->set_handoff_proof(fencing_key_->ProveHandoff(node.gfid(), req.fencing_token(), bytes));
  }
  reply->set_handoff(std::move(bytes));
}

int StorageService::MakeDurable(int fd, bool datasync) {
  const int err = table_->Sync();
  if (err != 0) return err;
  return (datasync ? ::fdatasync(fd) : ::fsync(fd)) == 0 ? 0 : errno;
}

grpc::Status StorageService::Fsync(Ctx* ctx, const proto::FsyncRequest* req,
                                   proto::ErrReply* reply) {
  const Call call = Begin(kFsync, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  Fd dir;
  int fd = -1;
  if (err == 0) {
    if (S_ISREG(node->type())) {
      err = node->DataFd(false, &fd);
    } else if (S_ISDIR(node->type())) {
      dir = Fd(::openat(node->path_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      fd = dir.get();
      if (!dir.valid()) err = errno;
    } else {
      err = EINVAL;  // fsync(2) on a FIFO or socket says the same
    }
  }
  if (err == 0) err = MakeDurable(fd, req->datasync());
  reply->set_err(err);
  return Done(kFsync);
}

grpc::Status StorageService::Fallocate(Ctx* ctx, const proto::FallocateRequest* req,
                                       proto::ErrReply* reply) {
  const Call call = Begin(kFallocate, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  std::unique_lock<std::mutex> fence;
  int err = ResolveData(call, req->gfid(), &node);
  if (err == 0) err = CheckRange(req->offset(), req->length());
  if (err == 0) err = CheckData(call, *node, kMayWrite);
  int fd = -1;
  if (err == 0) {
    err = Admit(call, node.get(), req->fencing_token(), req->fencing_proof(), &fd, &fence);
  }
  // Collapsing or inserting a range moves every byte after it.
  if (err == 0) fencing_.Changing(node->gfid(), req->offset(), ExtentSet::kToEnd, fence);
  if (err == 0 && !Privileged(call.caller())) err = DropPrivileges(fd);
  if (err == 0 && ::fallocate(fd, req->mode(), static_cast<off_t>(req->offset()),
                              static_cast<off_t>(req->length())) != 0) {
    err = errno;
  }
  reply->set_err(err);
  return Done(kFallocate);
}

}  // namespace dfuse::storage
