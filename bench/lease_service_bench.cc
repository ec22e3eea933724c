// Round trips through the lease manager over real gRPC on loopback: an
// in-process manager and in-process agents. The argument is an emulated
// network round trip in microseconds (the agents delay every message they
// send by it, as the client daemons' --emulated-rtt-us does): 0 measures
// protocol and thread-handoff costs alone. Run by hand:
// build/bench/lease_service_bench, or recorded by tools/bench-lease.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "lease/agent.h"
#include "lease/manager_service.h"
#include "proto/lease.grpc.pb.h"

namespace dfuse::lease {
namespace {

// Aborts the run if a call failed, so that an error cannot pass for speed.
void Expect(bool ok) {
  if (!ok) std::abort();
}

std::unique_ptr<ManagerServer> StartManager() {
  spdlog::set_level(spdlog::level::warn);
  ManagerOptions o;
  o.term_ms = 5000;
  o.min_hold_ms = 0;  // measure the protocol, not the ping-pong damper
  o.max_hold_ms = 0;
  std::string error;
  auto manager = ManagerServer::Start(o, &error);
  Expect(manager != nullptr);
  return manager;
}

std::unique_ptr<LeaseAgent> StartAgent(int port, int64_t rtt_us, StatsRegistry* stats) {
  LeaseAgentOptions o;
  o.manager = "127.0.0.1:" + std::to_string(port);
  o.emulated_rtt = std::chrono::microseconds(rtt_us);
  auto agent = std::make_unique<LeaseAgent>(
      o, [](uint64_t, LeaseMode, std::chrono::milliseconds) {}, stats);
  std::string error;
  Expect(agent->Start(std::chrono::seconds(5), &error) == 0);
  return agent;
}

// Acquires a file nobody holds per iteration: one Acquire -> Grant round
// trip, then (with `release`) its Release, which the caller writes too.
void AcquireNewFiles(benchmark::State& state, bool release) {
  auto manager = StartManager();
  StatsRegistry stats;
  auto agent = StartAgent(manager->port(), state.range(0), &stats);
  uint64_t gfid = 1;
  for (auto _ : state) {
    uint64_t token;
    Expect(agent->Acquire(gfid, LeaseMode::kWrite, &token) == 0);
    if (release) agent->Release(gfid);
    gfid++;
  }
}

void BM_AcquireGrant(benchmark::State& state) { AcquireNewFiles(state, /*release=*/true); }
BENCHMARK(BM_AcquireGrant)->ArgName("rtt_us")->Arg(0)->Arg(100)->Arg(500)->UseRealTime();

// Acquire alone: every lease is kept, so no Release is written or handled
// between two Acquires.
void BM_AcquireGrantKept(benchmark::State& state) { AcquireNewFiles(state, /*release=*/false); }
BENCHMARK(BM_AcquireGrantKept)->ArgName("rtt_us")->Arg(0)->UseRealTime();

// Two writers take turns on one file: each Acquire revokes the other
// (Acquire, Revoke, RevokeAck, Grant: two round trips plus handler handoff).
void BM_WriteHandoff(benchmark::State& state) {
  auto manager = StartManager();
  StatsRegistry stats_a, stats_b;
  auto a = StartAgent(manager->port(), state.range(0), &stats_a);
  auto b = StartAgent(manager->port(), state.range(0), &stats_b);
  LeaseAgent* writers[2] = {a.get(), b.get()};
  int turn = 0;
  for (auto _ : state) {
    uint64_t token;
    Expect(writers[turn]->Acquire(7, LeaseMode::kWrite, &token) == 0);
    turn ^= 1;
  }
}
BENCHMARK(BM_WriteHandoff)->ArgName("rtt_us")->Arg(0)->Arg(100)->Arg(500)->UseRealTime();

// The floor under both: one message each way on a bare Session stream of
// the same service (a sync server that answers every Acquire with a Grant,
// the caller writing and reading on its own thread), without the agent's
// reader thread, the manager's state or the Release.
class EchoManager final : public proto::LeaseManager::Service {
  grpc::Status Session(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<proto::ManagerMessage, proto::ClientMessage>* rw) override {
    proto::ClientMessage in;
    while (rw->Read(&in)) {
      proto::ManagerMessage out;
      out.mutable_grant()->set_request_id(in.acquire().request_id());
      out.mutable_grant()->set_gfid(in.acquire().gfid());
      if (!rw->Write(out)) break;
    }
    return grpc::Status::OK;
  }
};

// An EchoManager on loopback and one Session stream to it.
class EchoSession {
 public:
  EchoSession() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    Expect(server_ != nullptr);
    stub_ = proto::LeaseManager::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                             grpc::InsecureChannelCredentials()));
    stream_ = stub_->Session(&ctx_);
  }
  ~EchoSession() {
    stream_->WritesDone();  // the echo returns, and so the reader's Read
    if (reader_.joinable()) reader_.join();
    Expect(stream_->Finish().ok());
    server_->Shutdown();
  }

  // The caller reads the replies itself.
  bool Read(proto::ManagerMessage* in) { return stream_->Read(in); }
  // A thread of the session's reads them and passes each to on_reply.
  void StartReader(std::function<void(const proto::ManagerMessage&)> on_reply) {
    reader_ = std::thread([this, on_reply = std::move(on_reply)] {
      proto::ManagerMessage in;
      while (stream_->Read(&in)) on_reply(in);
    });
  }
  // Writes the next Acquire and returns its request_id.
  uint64_t WriteAcquire() {
    out_.mutable_acquire()->set_request_id(++id_);
    out_.mutable_acquire()->set_gfid(id_);
    Expect(stream_->Write(out_));
    return id_;
  }

 private:
  EchoManager service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<proto::LeaseManager::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<proto::ClientMessage, proto::ManagerMessage>> stream_;
  proto::ClientMessage out_;
  uint64_t id_ = 0;
  std::thread reader_;
};

void BM_BareStreamRoundTrip(benchmark::State& state) {
  EchoSession session;
  proto::ManagerMessage in;
  for (auto _ : state) {
    const uint64_t id = session.WriteAcquire();
    Expect(session.Read(&in) && in.grant().request_id() == id);
  }
}
BENCHMARK(BM_BareStreamRoundTrip)->UseRealTime();

// The same stream read by a thread of its own that hands each reply to the
// caller through a condition variable, as the agent's reader thread does:
// the difference to BM_BareStreamRoundTrip is what that hop costs.
void BM_BareStreamReaderHop(benchmark::State& state) {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t answered = 0;  // the request_id of the last reply
  EchoSession session;
  session.StartReader([&](const proto::ManagerMessage& in) {
    std::lock_guard<std::mutex> l(mu);
    answered = in.grant().request_id();
    cv.notify_all();
  });
  for (auto _ : state) {
    const uint64_t id = session.WriteAcquire();
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return answered == id; });
  }
}
BENCHMARK(BM_BareStreamReaderHop)->UseRealTime();

// The reader's hop again, with the caller polling for its reply (for up to
// LeaseAgentOptions::acquire_spin's default) before it sleeps, as
// LeaseAgent::Acquire does: what is left of the hop when the caller is
// running as the reply arrives.
void BM_BareStreamReaderSpin(benchmark::State& state) {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<uint64_t> answered{0};
  EchoSession session;
  session.StartReader([&](const proto::ManagerMessage& in) {
    std::lock_guard<std::mutex> l(mu);
    answered.store(in.grant().request_id(), std::memory_order_release);
    cv.notify_all();
  });
  const auto spin = LeaseAgentOptions().acquire_spin;
  for (auto _ : state) {
    const uint64_t id = session.WriteAcquire();
    const auto until = std::chrono::steady_clock::now() + spin;
    while (answered.load(std::memory_order_acquire) != id &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return answered.load(std::memory_order_relaxed) == id; });
  }
}
BENCHMARK(BM_BareStreamReaderSpin)->UseRealTime();

}  // namespace
}  // namespace dfuse::lease
