#include "lease/election.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "util/strings.h"

namespace dfuse::lease {

namespace {

constexpr uint64_t kMaxEpoch = (uint64_t{1} << 24) - 1;
constexpr int kCommandTimeoutMs = 5000;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// `name` if it holds a slash, else the first executable `name` in PATH.
std::string FindExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

// A child running `argv` with pipes to its stdin, stdout and stderr (fds
// returned; -1 where not wanted). With `die_with_parent`, the child gets
// SIGKILL when the calling thread ends (PR_SET_PDEATHSIG).
pid_t Spawn(const std::vector<std::string>& argv, bool die_with_parent, int* in_fd, int* out_fd,
            int* err_fd) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if ((in_fd && pipe2(in, O_CLOEXEC) != 0) || pipe2(out, O_CLOEXEC) != 0 ||
      (err_fd && pipe2(err, O_CLOEXEC) != 0)) {
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]})
      if (fd >= 0) close(fd);
    return -1;
  }
  // Built before fork: the child of a multi-threaded process may only make
  // async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  const pid_t pid = fork();
  if (pid == 0) {
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent is already gone
    }
    // The manager blocks its signals for sigwait; etcdctl must not inherit that.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(in_fd ? in[0] : devnull, 0);
    dup2(out[1], 1);
    dup2(err_fd ? err[1] : devnull, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  for (int fd : {in[0], out[1], err[1]})
    if (fd >= 0) close(fd);
  if (pid < 0) {
    for (int fd : {in[1], out[0], err[0]})
      if (fd >= 0) close(fd);
    return -1;
  }
  if (in_fd) *in_fd = in[1];
  *out_fd = out[0];
  if (err_fd) *err_fd = err[0];
  return pid;
}

std::string LastLine(const std::string& text) {
  size_t end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  const size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

std::string Base64Decode(const std::string& in) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const size_t v = kAlphabet.find(c);
    if (v == std::string::npos) continue;  // '=' padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace

Election::Election(ElectionOptions options)
    : options_(std::move(options)),
      leader_key_("/dfuse/lease-manager/" + options_.name + "/leader"),
      epoch_key_("/dfuse/lease-manager/" + options_.name + "/epoch") {}

Election::~Election() { Resign(); }

std::vector<std::string> Election::Connection() const {
  std::vector<std::string> argv = {etcdctl_path_, "--dial-timeout", "1s"};
  if (options_.tls_ca.empty()) {
    argv.insert(argv.end(), {"--endpoints", options_.endpoints});
    return argv;
  }
  // HOST:PORT endpoints are reached over https; etcdctl wants the scheme.
  std::string endpoints;
  for (const std::string& one : Split(options_.endpoints, ',')) {
    if (!endpoints.empty()) endpoints += ',';
    endpoints += one.find("://") == std::string::npos ? "https://" + one : one;
  }
  argv.insert(argv.end(), {"--endpoints", endpoints, "--cacert", options_.tls_ca, "--cert",
                           options_.tls_cert, "--key", options_.tls_key});
  return argv;
}

int Election::Etcdctl(const std::vector<std::string>& args, const std::string& input,
                      std::string* out, std::string* err) {
  std::vector<std::string> argv = Connection();
  argv.insert(argv.end(), {"--command-timeout", "3s"});
  argv.insert(argv.end(), args.begin(), args.end());
  int in_fd = -1, out_fd = -1, err_fd = -1;
  const pid_t pid = Spawn(argv, /*die_with_parent=*/true, &in_fd, &out_fd, &err_fd);
  if (pid < 0) {
    *err = std::string("cannot run etcdctl: ") + std::strerror(errno);
    return -1;
  }
  // The input is tiny: it fits in the pipe buffer.
  if (!input.empty() && write(in_fd, input.data(), input.size()) < 0) {
    spdlog::warn("cannot write to etcdctl: {}", std::strerror(errno));
  }
  close(in_fd);
  out->clear();
  std::string errors;
  const int64_t deadline = NowNs() + int64_t{kCommandTimeoutMs} * 1000000;
  bool timed_out = false;
  for (int open_fds = 2; open_fds > 0;) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    const int64_t left_ms = (deadline - NowNs()) / 1000000;
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left_ms)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? *out : errors).append(buf, n);
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        (i == 0 ? out_fd : err_fd) = -1;
        open_fds--;
      }
    }
  }
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  *err = timed_out ? "etcdctl timed out" : LastLine(errors);
  if (timed_out) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Election::Check(std::string* error) {
  etcdctl_path_ = FindExecutable(options_.etcdctl);
  if (etcdctl_path_.empty()) {
    *error = "etcdctl not found (" + options_.etcdctl +
             "); install the Debian package etcd-client (tools/setup-deps.sh)";
    return false;
  }
  std::string out, err;
  if (Etcdctl({"get", "--prefix", "/dfuse/lease-manager/" + options_.name + "/"}, "", &out, &err) !=
      0) {
    *error = "cannot reach etcd at " + options_.endpoints + ": " + err;
    return false;
  }
  return true;
}

ElectionRound Election::TryOnce() {
  ElectionRound round;
  if (leader_) {
    round.error = "already the leader";
    return round;
  }
  // 1. Who leads, and what is the epoch?
  std::string out, err;
  if (Etcdctl({"get", "--prefix", "/dfuse/lease-manager/" + options_.name + "/", "-w", "json"}, "",
              &out, &err) != 0) {
    round.error = "cannot reach etcd at " + options_.endpoints + ": " + err;
    return round;
  }
  std::string leader, epoch_text;
  bool have_epoch = false;
  try {
    const nlohmann::json j = nlohmann::json::parse(out);
    for (const auto& kv : j.value("kvs", nlohmann::json::array())) {
      const std::string key = Base64Decode(kv.value("key", ""));
      const std::string value = Base64Decode(kv.value("value", ""));
      if (key == leader_key_) leader = value;
      if (key == epoch_key_) {
        epoch_text = value;
        have_epoch = true;
      }
    }
  } catch (const std::exception& e) {
    round.error = std::string("unexpected etcdctl output: ") + e.what();
    return round;
  }
  if (!leader.empty()) {
    round.kind = ElectionRound::kFollower;
    round.leader = leader;
    return round;
  }
  uint64_t epoch = 0;
  if (have_epoch) {
    char* end = nullptr;
    epoch = std::strtoull(epoch_text.c_str(), &end, 10);
    if (epoch_text.empty() || *end != '\0') {
      round.error = epoch_key_ + " holds no epoch number: '" + epoch_text + "'";
      return round;
    }
  }
  if (epoch >= kMaxEpoch) {
    round.error = "epochs exhausted (" + std::to_string(epoch) + ")";
    return round;
  }

  // 2. An etcd lease for the leader key. Its clock starts before the grant
  // is sent: renewal ages are measured from here, conservatively.
  const int64_t granted_ns = NowNs();
  if (Etcdctl({"lease", "grant", std::to_string(options_.ttl_s)}, "", &out, &err) != 0) {
    round.error = "etcd lease grant failed: " + err;
    return round;
  }
  // "lease 694d7ed5e1e6a10b granted with TTL(3s)"
  std::istringstream words(out);
  std::string word, lease_id;
  words >> word >> lease_id;
  if (word != "lease" || lease_id.empty()) {
    round.error = "unexpected etcdctl lease grant output: " + LastLine(out);
    return round;
  }

  // 3. Take the leader key and the next epoch, if nobody did meanwhile.
  const std::string epoch_compare = have_epoch
                                        ? "value(\"" + epoch_key_ + "\") = \"" + epoch_text + "\""
                                        : "create(\"" + epoch_key_ + "\") = \"0\"";
  const std::string txn = "create(\"" + leader_key_ + "\") = \"0\"\n" + epoch_compare + "\n\n" +
                          "put " + leader_key_ + " " + options_.proposal + " --lease=" + lease_id +
                          "\nput " + epoch_key_ + " " + std::to_string(epoch + 1) + "\n\n\n";
  if (Etcdctl({"txn"}, txn, &out, &err) != 0) {
    round.error = "etcd txn failed: " + err;
    return round;
  }
  if (out.rfind("SUCCESS", 0) != 0) {
    // Someone else won this round; the unused lease expires by itself.
    round.kind = ElectionRound::kFollower;
    return round;
  }
  leader_ = true;
  lease_id_ = lease_id;
  last_renewal_ns_ = granted_ns;
  if (!StartKeepAlive(&round.error)) {
    Resign();
    round.kind = ElectionRound::kError;
    return round;
  }
  round.kind = ElectionRound::kLeader;
  round.epoch = epoch + 1;
  return round;
}

bool Election::StartKeepAlive(std::string* error) {
  std::vector<std::string> argv = Connection();
  argv.insert(argv.end(), {"lease", "keep-alive", lease_id_});
  keepalive_pid_ = Spawn(argv, /*die_with_parent=*/true, nullptr, &keepalive_fd_, nullptr);
  if (keepalive_pid_ < 0) {
    *error = std::string("cannot start etcdctl lease keep-alive: ") + std::strerror(errno);
    return false;
  }
  // "lease 694d7ed5e1e6a10b keepalived with TTL(3)" per renewal; anything
  // else ("... expired or revoked.") is followed by its exit.
  keepalive_reader_ = std::thread([this, fd = keepalive_fd_] {
    std::string buf;
    char chunk[512];
    for (ssize_t n; (n = read(fd, chunk, sizeof(chunk))) != 0;) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      buf.append(chunk, n);
      for (size_t eol; (eol = buf.find('\n')) != std::string::npos; buf.erase(0, eol + 1)) {
        const std::string line = buf.substr(0, eol);
        if (line.find("keepalived") != std::string::npos) {
          last_renewal_ns_ = NowNs();
        } else if (!line.empty()) {
          spdlog::warn("etcd lease keep-alive: {}", line);
        }
      }
    }
  });
  return true;
}

bool Election::StillLeader() {
  if (!leader_) return false;
  int status;
  if (waitpid(keepalive_pid_, &status, WNOHANG) == keepalive_pid_) {
    spdlog::error("etcd lease keep-alive exited: leadership lost");
    keepalive_pid_ = -1;
    return false;
  }
  // Renewals come every TTL/3; two missed ones mean the lease may be about
  // to expire on the etcd side.
  const int64_t silent_ns = NowNs() - last_renewal_ns_;
  if (silent_ns > int64_t{options_.ttl_s} * 2000000000 / 3) {
    spdlog::error("no etcd lease renewal for {} ms: leadership may be lost", silent_ns / 1000000);
    return false;
  }
  return true;
}

void Election::StopKeepAlive() {
  if (keepalive_pid_ > 0) {
    kill(keepalive_pid_, SIGKILL);
    while (waitpid(keepalive_pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    keepalive_pid_ = -1;
  }
  if (keepalive_reader_.joinable()) keepalive_reader_.join();  // sees EOF: the child is gone
  if (keepalive_fd_ >= 0) {
    close(keepalive_fd_);
    keepalive_fd_ = -1;
  }
}

void Election::Resign() {
  if (!leader_) return;
  leader_ = false;
  StopKeepAlive();
  // Revoking deletes the leader key now instead of one TTL later, so a
  // standby takes over at once after a clean shutdown.
  std::string out, err;
  if (Etcdctl({"lease", "revoke", lease_id_}, "", &out, &err) != 0) {
    spdlog::warn("cannot revoke etcd lease {} ({}); the leader key expires in {} s", lease_id_, err,
                 options_.ttl_s);
  }
  lease_id_.clear();
}

}  // namespace dfuse::lease
