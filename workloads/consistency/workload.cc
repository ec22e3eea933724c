#include "workloads/consistency/workload.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <thread>

namespace dfuse::checker {

namespace {

int64_t NowNs(clockid_t clock = CLOCK_MONOTONIC) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string ErrnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Counters the parent reads for progress, and the stop flag it sets at the
// duration limit, in memory shared with the forked workers. Slot 0 is the
// flag, slot 1 + w counts worker w's finished operations.
class SharedCounters {
 public:
  explicit SharedCounters(size_t workers) : size_((workers + 1) * sizeof(std::atomic<uint64_t>)) {
    void* mem = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error(ErrnoText("mmap"));
    slots_ = static_cast<std::atomic<uint64_t>*>(mem);
    for (size_t i = 0; i <= workers; ++i) new (&slots_[i]) std::atomic<uint64_t>(0);
  }
  ~SharedCounters() { munmap(slots_, size_); }
  SharedCounters(const SharedCounters&) = delete;
  SharedCounters& operator=(const SharedCounters&) = delete;

  std::atomic<uint64_t>& stop() { return slots_[0]; }
  std::atomic<uint64_t>& done(size_t worker) { return slots_[1 + worker]; }

 private:
  size_t size_;
  std::atomic<uint64_t>* slots_;
};

// Removes the per-worker history files however the run ends.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dfuse-checker-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error(ErrnoText("mkdtemp"));
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string File(size_t worker) const { return path_ + "/worker-" + std::to_string(worker); }

 private:
  std::string path_;
};

uint64_t FileSize(const RunOptions& o) { return uint64_t{o.blocks} * o.block_size; }

// Opens the shared files on `mount`. Another node may briefly not see them
// yet (a cached negative entry or size), so keep trying for a few seconds.
std::vector<int> OpenFiles(const RunOptions& o, const std::string& mount) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<int> fds;
  for (uint32_t i = 0; i < o.files; ++i) {
    const std::string path = mount + "/" + SharedFileName(i);
    for (;;) {
      int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
      struct stat st;
      if (fd >= 0 && fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= FileSize(o)) {
        fds.push_back(fd);
        break;
      }
      const std::string err = fd < 0 ? ErrnoText("cannot open " + path)
                                     : path + " is shorter than " + std::to_string(FileSize(o));
      if (fd >= 0) close(fd);
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error(err);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return fds;
}

// The body of this run's worker `worker` (a forked child); returns its exit
// status.
int RunWorker(const RunOptions& o, uint32_t worker, uint64_t quota, const std::string& out_path,
              SharedCounters& shared) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  const uint32_t node = worker / o.procs;               // index into o.mounts
  const uint32_t id = o.first_node * o.procs + worker;  // unique across hosts
  try {
    const std::vector<int> fds = OpenFiles(o, o.mounts[node]);
    if (o.start_at_ns > 0) {
      const timespec at = {static_cast<time_t>(o.start_at_ns / 1'000'000'000),
                           static_cast<long>(o.start_at_ns % 1'000'000'000)};
      while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, nullptr) == EINTR) {
      }
    }
    FILE* out = fopen(out_path.c_str(), "wb");
    if (out == nullptr) throw std::runtime_error(ErrnoText("cannot create " + out_path));
    std::mt19937_64 rng(SplitMix64(o.seed ^ SplitMix64(id)));
    std::uniform_real_distribution<double> coin(0, 1);
    const clockid_t clock = o.realtime_clock ? CLOCK_REALTIME : CLOCK_MONOTONIC;
    std::vector<uint64_t> words(o.block_size / sizeof(uint64_t));
    uint64_t seq = 0;
    for (uint64_t i = 0; i < quota && shared.stop().load(std::memory_order_relaxed) == 0; ++i) {
      Op op;
      op.process = id;
      op.node = o.first_node + node;
      op.file = static_cast<uint32_t>(rng() % o.files);
      op.block = static_cast<uint32_t>(rng() % o.blocks);
      const int fd = fds[op.file];
      const off_t offset = off_t{op.block} * o.block_size;
      if (coin(rng) < o.write_ratio) {
        op.kind = OpKind::kWrite;
        op.value = (uint64_t{id} << 40) | ++seq;
        std::fill(words.begin(), words.end(), op.value);
        op.invoke_ns = NowNs(clock);
        const ssize_t n = pwrite(fd, words.data(), o.block_size, offset);
        op.return_ns = NowNs(clock);
        // A short write may have landed in part: as uncertain as an error.
        op.ok = n == static_cast<ssize_t>(o.block_size);
      } else {
        op.kind = OpKind::kRead;
        op.invoke_ns = NowNs(clock);
        const ssize_t n = pread(fd, words.data(), o.block_size, offset);
        op.return_ns = NowNs(clock);
        op.ok = n >= 0;
        if (op.ok) {
          // The file never shrinks, so a short read is a wrong answer: the
          // missing bytes read as zeros, which the register check judges.
          std::memset(reinterpret_cast<char*>(words.data()) + n, 0, o.block_size - n);
          op.value = words[0];
          op.torn =
              std::any_of(words.begin(), words.end(), [&](uint64_t w) { return w != op.value; });
        }
      }
      if (fwrite(&op, sizeof op, 1, out) != 1) throw std::runtime_error(ErrnoText(out_path));
      shared.done(worker).fetch_add(1, std::memory_order_relaxed);
    }
    if (fclose(out) != 0) throw std::runtime_error(ErrnoText(out_path));
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "dfuse-checker: worker %u on %s: %s\n", id, o.mounts[node].c_str(), e.what());
    return 2;
  }
}

std::vector<Op> ReadWorkerFile(const std::string& path) {
  FILE* in = fopen(path.c_str(), "rb");
  if (in == nullptr) throw std::runtime_error(ErrnoText("cannot read " + path));
  std::vector<Op> ops;
  Op op;
  while (fread(&op, sizeof op, 1, in) == 1) ops.push_back(op);
  fclose(in);
  return ops;
}

}  // namespace

std::string SharedFileName(uint32_t i) { return "dfuse-checker." + std::to_string(i); }

void CreateFiles(const RunOptions& o) {
  const std::vector<char> zeros(o.block_size, 0);
  for (uint32_t i = 0; i < o.files; ++i) {
    const std::string path = o.mounts[0] + "/" + SharedFileName(i);
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error(ErrnoText("cannot create " + path));
    for (uint32_t b = 0; b < o.blocks; ++b) {
      if (pwrite(fd, zeros.data(), zeros.size(), off_t{b} * o.block_size) !=
          static_cast<ssize_t>(zeros.size())) {
        close(fd);
        throw std::runtime_error(ErrnoText("cannot write " + path));
      }
    }
    if (fsync(fd) != 0 || close(fd) != 0) throw std::runtime_error(ErrnoText("fsync " + path));
  }
}

RunResult RunWorkload(const RunOptions& o) {
  for (const std::string& m : o.mounts) {
    struct stat st;
    if (stat(m.c_str(), &st) != 0) throw std::runtime_error(ErrnoText("mount " + m));
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error("mount " + m + " is not a directory");
  }
  if (o.create_files) CreateFiles(o);

  const size_t workers = o.mounts.size() * o.procs;
  SharedCounters shared(workers);
  TempDir tmp;
  std::vector<pid_t> pids;
  // The duration limit and the progress rate count from the agreed start.
  const int64_t start = NowNs() + std::max<int64_t>(0, o.start_at_ns - NowNs(CLOCK_REALTIME));
  fflush(nullptr);
  for (uint32_t w = 0; w < workers; ++w) {
    const uint64_t quota = o.ops / workers + (w < o.ops % workers ? 1 : 0);
    const pid_t pid = fork();
    if (pid < 0) {
      shared.stop().store(1);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      throw std::runtime_error(ErrnoText("fork"));
    }
    if (pid == 0) _exit(RunWorker(o, w, quota, tmp.File(w), shared));
    pids.push_back(pid);
  }

  // Wait for the workers, reporting progress and enforcing the time limit.
  // Workers stuck in a syscall are killed 10 s after they were told to stop.
  RunResult result;
  std::vector<int> status(workers, -1);
  size_t running = workers;
  int64_t last_report = start, stop_at = 0;
  uint64_t last_done = 0;
  while (running > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (size_t w = 0; w < workers; ++w) {
      if (status[w] == -1 && waitpid(pids[w], &status[w], WNOHANG) == pids[w]) {
        --running;
      }
    }
    const int64_t now = NowNs();
    if (o.progress && now - last_report >= 1'000'000'000) {
      uint64_t done = 0;
      for (size_t w = 0; w < workers; ++w) done += shared.done(w).load();
      // Time left from the average rate so far, which one slow second
      // (a revoke storm, a CPU hog) does not swing.
      const double avg = done * 1e9 / std::max<int64_t>(now - start, 1);
      const double left = avg > 0 ? (o.ops - std::min<uint64_t>(done, o.ops)) / avg : 0;
      fprintf(stderr, "dfuse-checker: %llu/%llu ops, %.0f ops/s, ~%.0f s left\n",
              static_cast<unsigned long long>(done), static_cast<unsigned long long>(o.ops),
              (done - last_done) * 1e9 / (now - last_report), left);
      last_done = done;
      last_report = now;
    }
    if (o.duration_limit > 0 && stop_at == 0 && (now - start) / 1e9 > o.duration_limit) {
      shared.stop().store(1);
      result.stopped_early = true;
      stop_at = now;
    }
    if (stop_at != 0 && now - stop_at > 10'000'000'000) {
      for (size_t w = 0; w < workers; ++w) {
        if (status[w] == -1) kill(pids[w], SIGKILL);
      }
      for (size_t w = 0; w < workers; ++w) {
        if (status[w] == -1) waitpid(pids[w], nullptr, 0);
      }
      throw std::runtime_error("workers did not stop within 10 s of the duration limit");
    }
  }
  result.seconds = (NowNs() - start) / 1e9;
  for (size_t w = 0; w < workers; ++w) {
    if (!WIFEXITED(status[w]) || WEXITSTATUS(status[w]) != 0) {
      throw std::runtime_error("worker " + std::to_string(w) + " on " + o.mounts[w / o.procs] +
                               " failed (status " + std::to_string(status[w]) + ")");
    }
    std::vector<Op> ops = ReadWorkerFile(tmp.File(w));
    result.history.insert(result.history.end(), ops.begin(), ops.end());
  }
  std::stable_sort(result.history.begin(), result.history.end(),
                   [](const Op& a, const Op& b) { return a.invoke_ns < b.invoke_ns; });
  return result;
}

}  // namespace dfuse::checker
