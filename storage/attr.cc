#include "storage/attr.h"

namespace dfuse::storage {

namespace {
constexpr int64_t kNanosPerSecond = 1'000'000'000;
}  // namespace

int64_t ToNanos(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

struct timespec FromNanos(int64_t ns) {
  int64_t sec = ns / kNanosPerSecond;
  int64_t rem = ns % kNanosPerSecond;
  if (rem < 0) {  // round towards -infinity, as timestamps before 1970 need
    rem += kNanosPerSecond;
    sec--;
  }
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(sec);
  ts.tv_nsec = static_cast<long>(rem);
  return ts;
}

void FillAttr(const struct stat& st, uint64_t gfid, uint64_t generation, proto::Attr* attr) {
  attr->set_gfid(gfid);
  attr->set_generation(generation);
  attr->set_mode(st.st_mode);
  attr->set_nlink(static_cast<uint32_t>(st.st_nlink));
  attr->set_uid(st.st_uid);
  attr->set_gid(st.st_gid);
  attr->set_rdev(st.st_rdev);
  attr->set_size(static_cast<uint64_t>(st.st_size));
  attr->set_blocks(static_cast<uint64_t>(st.st_blocks));
  attr->set_blksize(static_cast<uint32_t>(st.st_blksize));
  attr->set_atime_ns(ToNanos(st.st_atim));
  attr->set_mtime_ns(ToNanos(st.st_mtim));
  attr->set_ctime_ns(ToNanos(st.st_ctim));
}

}  // namespace dfuse::storage
