#include "storage/handle_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace dfuse::storage {
namespace {

constexpr char kLogName[] = "handles.log";
constexpr char kMagic[] = "dfuse-handles-v1";
// Rewrite the log at start when it has this many more lines than records.
constexpr size_t kCompactSlack = 1024;

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool Unhex(std::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

std::string HeaderLine(const std::string& root_handle) {
  return std::string(kMagic) + " " + Hex(root_handle) + "\n";
}

std::string RecordLine(const HandleRecord& r) {
  return std::to_string(r.local_id) + " " + std::to_string(r.generation) + " " + Hex(r.handle) +
         "\n";
}

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t next = x * 10 + static_cast<uint64_t>(c - '0');
    if (next / 10 != x) return false;
    x = next;
  }
  *v = x;
  return true;
}

bool ParseRecord(std::string_view line, HandleRecord* r) {
  const size_t a = line.find(' ');
  if (a == std::string_view::npos) return false;
  const size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  return ParseU64(line.substr(0, a), &r->local_id) &&
         ParseU64(line.substr(a + 1, b - a - 1), &r->generation) &&
         Unhex(line.substr(b + 1), &r->handle) && !r->handle.empty();
}

int WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

std::string Errno(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// Replaces the log with a header and one line per record, atomically.
bool Rewrite(int dir_fd, const std::string& root_handle, const HandleRecords& records,
             std::string* error) {
  const std::string tmp = std::string(kLogName) + ".tmp";
  Fd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    *error = Errno("cannot create " + tmp, errno);
    return false;
  }
  std::string text = HeaderLine(root_handle);
  for (const auto& [id, r] : records) text += RecordLine(r);
  int err = WriteAll(fd.get(), text);
  if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
  if (err == 0 && ::renameat(dir_fd, tmp.c_str(), dir_fd, kLogName) != 0) err = errno;
  if (err == 0 && ::fsync(dir_fd) != 0) err = errno;
  if (err != 0) *error = Errno("cannot write " + tmp, err);
  return err == 0;
}

}  // namespace

std::unique_ptr<HandleLog> HandleLog::Open(const std::string& state_dir,
                                           const std::string& root_handle, HandleRecords* records,
                                           std::string* error) {
  Fd dir(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    *error = Errno("cannot open state dir " + state_dir, errno);
    return nullptr;
  }
  const std::string path = state_dir + "/" + kLogName;
  records->clear();
  size_t lines = 0;
  bool rewrite = false;
  Fd in(::openat(dir.get(), kLogName, O_RDONLY | O_CLOEXEC));
  if (in.valid()) {
    std::string text;
    if (!ReadAll(in.get(), &text)) {
      *error = Errno("cannot read " + path, errno);
      return nullptr;
    }
    std::string_view rest = text;
    const size_t eol = rest.find('\n');
    if (eol == std::string_view::npos ||
        std::string(rest.substr(0, eol + 1)) != HeaderLine(root_handle)) {
      *error = path + " was written for another export (or is not a dfuse handle log)";
      return nullptr;
    }
    rest.remove_prefix(eol + 1);
    // Only newline-terminated lines are complete; a partial tail is dropped.
    for (size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1)) {
      HandleRecord r;
      lines++;
      if (ParseRecord(rest.substr(0, nl), &r)) (*records)[r.local_id] = std::move(r);
    }
    // Appending after a torn tail would glue the next record onto it.
    rewrite = !rest.empty() || lines > records->size() + kCompactSlack;
  } else if (errno == ENOENT) {
    rewrite = true;
  } else {
    *error = Errno("cannot open " + path, errno);
    return nullptr;
  }
  if (rewrite) {
    if (!Rewrite(dir.get(), root_handle, *records, error)) return nullptr;
  }
  Fd out(::openat(dir.get(), kLogName, O_WRONLY | O_APPEND | O_CLOEXEC));
  if (!out.valid()) {
    *error = Errno("cannot open " + path + " for appending", errno);
    return nullptr;
  }
  return std::unique_ptr<HandleLog>(new HandleLog(std::move(out)));
}

int HandleLog::Append(const HandleRecord& record) {
  dirty_.store(true, std::memory_order_release);
  return WriteAll(fd_.get(), RecordLine(record));
}

int HandleLog::Sync() {
  std::lock_guard<std::mutex> l(sync_mu_);
  if (!dirty_.exchange(false, std::memory_order_acq_rel)) return 0;
  if (::fdatasync(fd_.get()) != 0) {
    const int err = errno;
    dirty_.store(true, std::memory_order_release);
    return err;
  }
  return 0;
}

}  // namespace dfuse::storage
