#include "workloads/personalities/personality.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "workloads/personalities/fileset.h"

namespace dfuse::personality {
namespace {

constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;
constexpr size_t kFlowops = 8;

// Table 2 of the paper gives files, width, size and the read:write ratio;
// the flowop loops follow filebench's personalities of the same names, and
// for netsfs (whose script the paper does not show) a file-server mix with
// Table 2's 5:2 reads to writes plus stat and readdir.
const Personality kPersonalities[] = {
    {"fileserver", 10000, 20, 1280 * kKiB, 80, kMiB, 16 * kKiB,
     {Flowop::kCreate, Flowop::kAppend, Flowop::kReadWhole, Flowop::kDelete, Flowop::kStat}},
    {"webserver", 80000, 20, 160 * kKiB, 100, kMiB, 16 * kKiB,
     {Flowop::kReadWhole, Flowop::kReadWhole, Flowop::kReadWhole, Flowop::kReadWhole,
      Flowop::kReadWhole, Flowop::kReadWhole, Flowop::kReadWhole, Flowop::kReadWhole,
      Flowop::kReadWhole, Flowop::kReadWhole, Flowop::kAppendLog}},
    {"netsfs", 74000, 20, 267 * kKiB, 100, kMiB, 16 * kKiB,
     {Flowop::kReadWhole, Flowop::kReadWhole, Flowop::kAppend, Flowop::kReadWhole, Flowop::kStat,
      Flowop::kReadWhole, Flowop::kWriteWhole, Flowop::kReadWhole, Flowop::kListDir}},
};

std::runtime_error IoError(const char* what, const std::string& path) {
  return std::runtime_error(std::string(what) + " " + path + ": " + strerror(errno));
}

// Writes `size` bytes from offset 0 (or at the end with O_APPEND) in io-size
// pieces.
void WriteAll(int fd, const std::string& path, const std::vector<char>& buf, uint64_t size) {
  while (size > 0) {
    const size_t n = std::min<uint64_t>(size, buf.size());
    const ssize_t w = write(fd, buf.data(), n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw IoError("write", path);
    }
    size -= static_cast<uint64_t>(w);
  }
}

// WriteAll, then close(2); the descriptor is closed on every path.
void WriteAndClose(int fd, const std::string& path, const std::vector<char>& buf, uint64_t size) {
  try {
    WriteAll(fd, path, buf, size);
  } catch (...) {
    close(fd);
    throw;
  }
  if (close(fd) != 0) throw IoError("close", path);
}

struct ThreadStats {
  std::array<uint64_t, kFlowops> count{}, ns{}, bytes{};
  uint64_t races = 0;
};

class Worker {
 public:
  Worker(const Personality& p, const RunOptions& o, const FilesetLayout& layout,
         FilesetView* view, uint64_t seed)
      : p_(p), o_(o), layout_(layout), view_(view), rng_(seed), buf_(p.io_size, 'p') {}

  // Runs the loop until `stop`; returns what it did.
  ThreadStats Loop(const std::atomic<bool>& stop) {
    while (!stop.load(std::memory_order_relaxed)) {
      for (Flowop op : p_.loop) {
        if (stop.load(std::memory_order_relaxed)) break;
        const auto start = std::chrono::steady_clock::now();
        const std::optional<uint64_t> bytes = Do(op);
        if (!bytes) {
          stats_.races++;
          continue;
        }
        const size_t k = static_cast<size_t>(op);
        stats_.count[k]++;
        stats_.bytes[k] += *bytes;
        stats_.ns[k] += std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
      }
    }
    return stats_;
  }

 private:
  // Bytes moved, or nullopt if another node's create/delete got there first
  // (or this node believes no file qualifies).
  std::optional<uint64_t> Do(Flowop op) {
    switch (op) {
      case Flowop::kCreate: return Create();
      case Flowop::kDelete: return Delete();
      case Flowop::kListDir: return ListDir();
      case Flowop::kAppendLog: return Write(o_.dir + "/" + o_.log_name, O_APPEND, AppendSize());
      default: break;
    }
    const std::optional<size_t> i = view_->PickExisting(rng_);
    if (!i) return std::nullopt;
    const std::string path = layout_.FilePath(*i);
    std::optional<uint64_t> r;
    switch (op) {
      case Flowop::kReadWhole: r = Read(path); break;
      case Flowop::kWriteWhole: r = Write(path, 0, o_.file_size); break;
      case Flowop::kAppend: r = Write(path, O_APPEND, AppendSize()); break;
      default: r = Stat(path); break;
    }
    if (!r) view_->MarkAbsent(*i);
    return r;
  }

  uint64_t AppendSize() {
    return std::uniform_int_distribution<uint64_t>(1, 2 * p_.append_size - 1)(rng_);
  }

  std::optional<uint64_t> Create() {
    const std::optional<size_t> i = view_->TakeAbsent(rng_);
    if (!i) return std::nullopt;
    const std::string path = layout_.FilePath(*i);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno != EEXIST) throw IoError("create", path);
      view_->Return(*i, true);
      return std::nullopt;
    }
    WriteAndClose(fd, path, buf_, o_.file_size);
    view_->Return(*i, true);
    return o_.file_size;
  }

  std::optional<uint64_t> Delete() {
    const std::optional<size_t> i = view_->TakeExisting(rng_);
    if (!i) return std::nullopt;
    const std::string path = layout_.FilePath(*i);
    const int r = unlink(path.c_str());
    if (r != 0 && errno != ENOENT) throw IoError("unlink", path);
    view_->Return(*i, false);
    if (r != 0) return std::nullopt;
    return 0;
  }

  std::optional<uint64_t> Read(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return std::nullopt;
      throw IoError("open", path);
    }
    uint64_t total = 0;
    for (;;) {
      const ssize_t n = read(fd, buf_.data(), buf_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        close(fd);
        throw IoError("read", path);
      }
      if (n == 0) break;
      total += static_cast<uint64_t>(n);
    }
    close(fd);
    return total;
  }

  std::optional<uint64_t> Write(const std::string& path, int flags, uint64_t size) {
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC | flags);
    if (fd < 0) {
      if (errno == ENOENT) return std::nullopt;
      throw IoError("open", path);
    }
    WriteAndClose(fd, path, buf_, size);
    return size;
  }

  std::optional<uint64_t> Stat(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0) return 0;
    if (errno == ENOENT) return std::nullopt;
    throw IoError("stat", path);
  }

  std::optional<uint64_t> ListDir() {
    const size_t leaf =
        std::uniform_int_distribution<size_t>(0, layout_.leaf_dirs() - 1)(rng_);
    const std::string path = layout_.LeafDir(leaf);
    DIR* d = opendir(path.c_str());
    if (!d) throw IoError("opendir", path);
    while (readdir(d) != nullptr) {
    }
    closedir(d);
    return 0;
  }

  const Personality& p_;
  const RunOptions& o_;
  const FilesetLayout& layout_;
  FilesetView* view_;
  std::mt19937_64 rng_;
  std::vector<char> buf_;
  ThreadStats stats_;
};

void MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw IoError("mkdir", path);
}

std::vector<bool> StatFiles(const FilesetLayout& layout, size_t files) {
  std::vector<bool> present(files);
  for (size_t i = 0; i < files; i++) {
    struct stat st;
    present[i] = stat(layout.FilePath(i).c_str(), &st) == 0;
  }
  return present;
}

}  // namespace

const char* FlowopName(Flowop op) {
  switch (op) {
    case Flowop::kCreate: return "create";
    case Flowop::kWriteWhole: return "writewhole";
    case Flowop::kAppend: return "append";
    case Flowop::kReadWhole: return "readwhole";
    case Flowop::kDelete: return "delete";
    case Flowop::kStat: return "stat";
    case Flowop::kListDir: return "listdir";
    case Flowop::kAppendLog: return "appendlog";
  }
  return "?";
}

bool IsRead(Flowop op) { return op == Flowop::kReadWhole; }

bool IsWrite(Flowop op) {
  return op == Flowop::kCreate || op == Flowop::kWriteWhole || op == Flowop::kAppend ||
         op == Flowop::kAppendLog;
}

const Personality* FindPersonality(const std::string& name) {
  for (const Personality& p : kPersonalities) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<std::string> PersonalityNames() {
  std::vector<std::string> names;
  for (const Personality& p : kPersonalities) names.push_back(p.name);
  return names;
}

RunOptions WithDefaults(const Personality& p, RunOptions o) {
  if (o.files == 0) o.files = p.files;
  if (o.dir_width == 0) o.dir_width = p.dir_width;
  if (o.file_size == 0) o.file_size = p.file_size;
  return o;
}

size_t CreateFileset(const Personality& p, const RunOptions& o) {
  const FilesetLayout layout(o.dir, o.files, o.dir_width);
  MakeDir(o.dir);
  for (const std::string& d : layout.Directories()) MakeDir(d);
  const std::vector<char> buf(p.io_size, 'p');
  size_t made = 0;
  for (size_t i = 0; i < o.files; i++) {
    // Every file whose index falls in the first prealloc_percent of each
    // hundred: spread evenly over the tree.
    if (static_cast<int>(i % 100) >= p.prealloc_percent) continue;
    const std::string path = layout.FilePath(i);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw IoError("create", path);
    WriteAndClose(fd, path, buf, o.file_size);
    made++;
  }
  const std::string log = o.dir + "/" + o.log_name;
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError("create", log);
  close(fd);
  return made;
}

std::string PresentFiles(const RunOptions& o) {
  const std::vector<bool> present = StatFiles(FilesetLayout(o.dir, o.files, o.dir_width), o.files);
  std::string text;
  for (size_t i = 0; i < present.size(); i += 4) {
    int digit = 0;
    for (size_t b = 0; b < 4 && i + b < present.size(); b++) digit |= present[i + b] << b;
    text += "0123456789abcdef"[digit];
  }
  return text;
}

std::vector<bool> ParsePresent(const std::string& text, size_t files) {
  if (text.size() != (files + 3) / 4) {
    throw std::invalid_argument("--present has " + std::to_string(text.size()) +
                                " digits; " + std::to_string(files) + " files need " +
                                std::to_string((files + 3) / 4));
  }
  std::vector<bool> present(files);
  for (size_t i = 0; i < files; i++) {
    const char c = text[i / 4];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      throw std::invalid_argument(std::string("--present: '") + c + "' is not a hex digit");
    }
    present[i] = (digit >> (i % 4)) & 1;
  }
  return present;
}

nlohmann::json RunWorkload(const Personality& p, const RunOptions& o) {
  const FilesetLayout layout(o.dir, o.files, o.dir_width);
  std::vector<bool> present = o.present.empty() ? StatFiles(layout, o.files) : o.present;
  if (present.size() != o.files) throw std::invalid_argument("present: wrong number of files");
  FilesetView view(std::move(present));
  if (view.present() == 0) throw std::runtime_error("no files under " + o.dir + ": run create first");

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::exception_ptr error;
  std::vector<ThreadStats> results(static_cast<size_t>(o.threads));
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < o.threads; t++) {
    threads.emplace_back([&, t] {
      try {
        Worker w(p, o, layout, &view, o.seed * 1000003 + static_cast<uint64_t>(t));
        results[static_cast<size_t>(t)] = w.Loop(stop);
      } catch (...) {
        std::lock_guard<std::mutex> l(mu);
        if (!error) error = std::current_exception();
        stop = true;
      }
    });
  }
  const auto deadline = start + std::chrono::duration<double>(o.seconds);
  while (!stop && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  ThreadStats sum;
  for (const ThreadStats& r : results) {
    for (size_t k = 0; k < kFlowops; k++) {
      sum.count[k] += r.count[k];
      sum.ns[k] += r.ns[k];
      sum.bytes[k] += r.bytes[k];
    }
    sum.races += r.races;
  }
  uint64_t ops = 0, ns = 0, read_bytes = 0, write_bytes = 0, reads = 0, writes = 0;
  nlohmann::json flowops = nlohmann::json::object();
  for (size_t k = 0; k < kFlowops; k++) {
    const Flowop op = static_cast<Flowop>(k);
    if (std::find(p.loop.begin(), p.loop.end(), op) == p.loop.end()) continue;
    ops += sum.count[k];
    ns += sum.ns[k];
    if (IsRead(op)) read_bytes += sum.bytes[k], reads += sum.count[k];
    if (IsWrite(op)) write_bytes += sum.bytes[k], writes += sum.count[k];
    flowops[FlowopName(op)] = {
        {"count", sum.count[k]},
        {"bytes", sum.bytes[k]},
        {"mean_ms", sum.count[k] ? sum.ns[k] / 1e6 / static_cast<double>(sum.count[k]) : 0.0}};
  }
  return {{"personality", p.name},
          {"dir", o.dir},
          {"files", o.files},
          {"dir_width", o.dir_width},
          {"file_size", o.file_size},
          {"threads", o.threads},
          {"seconds", seconds},
          {"ops", ops},
          {"ops_per_s", ops / seconds},
          {"reads", reads},
          {"writes", writes},
          {"read_bytes", read_bytes},
          {"write_bytes", write_bytes},
          {"mb_s", static_cast<double>(read_bytes + write_bytes) / 1e6 / seconds},
          {"mean_latency_ms", ops ? ns / 1e6 / static_cast<double>(ops) : 0.0},
          {"races", sum.races},
          {"flowops", flowops}};
}

}  // namespace dfuse::personality
