// Daemon signal handling without async-signal-safe handlers.
#ifndef DFUSE_UTIL_SIGNAL_WAITER_H_
#define DFUSE_UTIL_SIGNAL_WAITER_H_

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <ctime>

namespace dfuse {

// Blocks SIGTERM, SIGINT and SIGUSR1 and hands them to whoever waits: a
// plain thread with sigwait needs no async-signal-safe dance. Construct it
// before any other thread exists, so that all of them inherit the mask.
class SignalWaiter {
 public:
  SignalWaiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }

  // Returns the next signal received.
  int Wait() {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig;
  }

  // A signal, or 0 after `timeout`.
  int WaitFor(std::chrono::milliseconds timeout) {
    const timespec ts{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
                      .tv_nsec = static_cast<long>(timeout.count() % 1000 * 1000000)};
    const int sig = sigtimedwait(&set_, nullptr, &ts);
    return sig < 0 ? 0 : sig;
  }

 private:
  sigset_t set_;
};

}  // namespace dfuse

#endif  // DFUSE_UTIL_SIGNAL_WAITER_H_
