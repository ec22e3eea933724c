// Microbenchmarks of the lease state machine alone: no network, no clock.
// They bound what one manager core can do; real grant rates are set by
// round trips and flushes. Run by hand: build-*/bench/lease_bench.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "lease/state_machine.h"

namespace dfuse::lease {
namespace {

using Actions = StateMachine::Actions;

constexpr uint64_t kNow = 1000;
constexpr uint64_t kLongTerm = uint64_t{1} << 40;  // nobody expires mid-run

std::unique_ptr<StateMachine> NewMachine(int clients) {
  auto sm = std::make_unique<StateMachine>(Options{.epoch = 1, .term_ms = kLongTerm});
  Actions out;
  for (int c = 1; c <= clients; c++) sm->OpenSession(c, kNow, &out);
  return sm;
}

// Aborts the run if the machine did not answer as the benchmark assumes,
// so that a behaviour change cannot silently turn into a faster number.
void Expect(bool ok) {
  if (!ok) std::abort();
}

// One client opens and closes many files: a WRITE grant and a release each.
void BM_UncontendedGrant(benchmark::State& state) {
  const uint64_t files = state.range(0);
  auto sm = NewMachine(1);
  Actions out;
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t gfid = i % files;
    out.clear();
    sm->Acquire(1, ++i, gfid, Mode::kWrite, ByteRange{}, kNow, &out);
    Expect(out.size() == 1 && out[0].kind == Action::kGrant);
    sm->Release(1, gfid, kNow, &out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UncontendedGrant)->Arg(1)->Arg(1 << 10)->Arg(1 << 16);

// Readers share one file: each iteration one of them re-joins the others.
void BM_SharedReadGrant(benchmark::State& state) {
  const int readers = state.range(0);
  auto sm = NewMachine(readers);
  Actions out;
  uint64_t request = 0;
  for (int c = 1; c <= readers; c++) sm->Acquire(c, ++request, 7, Mode::kRead, {}, kNow, &out);
  int c = 0;
  for (auto _ : state) {
    const ClientId client = c + 1;
    c = (c + 1) % readers;
    out.clear();
    sm->Release(client, 7, kNow, &out);
    sm->Acquire(client, ++request, 7, Mode::kRead, ByteRange{}, kNow, &out);
    Expect(out.size() == 1 && out[0].kind == Action::kGrant);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SharedReadGrant)->Arg(1)->Arg(16)->Arg(256);

// Two writers take turns on one file: acquire, revoke, ack, grant.
void BM_WritePingPong(benchmark::State& state) {
  auto sm = NewMachine(2);
  Actions out;
  uint64_t request = 0;
  sm->Acquire(1, ++request, 7, Mode::kWrite, ByteRange{}, kNow, &out);
  ClientId holder = 1;
  for (auto _ : state) {
    const ClientId next = 3 - holder;
    out.clear();
    sm->Acquire(next, ++request, 7, Mode::kWrite, ByteRange{}, kNow, &out);
    Expect(out.size() == 1 && out[0].kind == Action::kRevoke);
    const uint64_t revoke_id = out[0].revoke_id;
    out.clear();
    sm->RevokeAck(holder, 7, revoke_id, Mode::kNone, kNow, &out);
    Expect(out.size() == 1 && out[0].kind == Action::kGrant && out[0].client == next);
    holder = next;
  }
  state.SetItemsProcessed(state.iterations());  // handoffs
}
BENCHMARK(BM_WritePingPong);

// A writer revokes N readers, all ack, it writes and leaves, the readers
// come back. Items are revokes.
void BM_RevokeFanout(benchmark::State& state) {
  const int readers = state.range(0);
  const ClientId writer = readers + 1;
  auto sm = NewMachine(readers + 1);
  Actions out, acks;
  uint64_t request = 0;
  for (int c = 1; c <= readers; c++) sm->Acquire(c, ++request, 7, Mode::kRead, {}, kNow, &out);
  for (auto _ : state) {
    out.clear();
    sm->Acquire(writer, ++request, 7, Mode::kWrite, ByteRange{}, kNow, &out);
    Expect(out.size() == static_cast<size_t>(readers));
    acks.clear();
    for (const Action& revoke : out) {
      sm->RevokeAck(revoke.client, 7, revoke.revoke_id, Mode::kNone, kNow, &acks);
    }
    Expect(acks.size() == 1 && acks[0].client == writer);
    sm->Release(writer, 7, kNow, &acks);
    for (int c = 1; c <= readers; c++) {
      sm->Acquire(c, ++request, 7, Mode::kRead, ByteRange{}, kNow, &acks);
    }
  }
  state.SetItemsProcessed(state.iterations() * readers);
}
BENCHMARK(BM_RevokeFanout)->Arg(1)->Arg(16)->Arg(256);

// Heartbeats of many sessions, each holding a lease (the expiry index is
// updated on every one).
void BM_Heartbeat(benchmark::State& state) {
  const int clients = state.range(0);
  auto sm = NewMachine(clients);
  Actions out;
  for (int c = 1; c <= clients; c++) sm->Acquire(c, c, c, Mode::kWrite, ByteRange{}, kNow, &out);
  uint64_t now = kNow;
  int c = 0;
  for (auto _ : state) {
    Expect(sm->Heartbeat(c + 1, ++now) == Status::kOk);
    c = (c + 1) % clients;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Heartbeat)->Arg(16)->Arg(4096);

}  // namespace
}  // namespace dfuse::lease
