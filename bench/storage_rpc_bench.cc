// One storage RPC round trip over gRPC on loopback (in-process storage
// service, the client daemon's StorageClient): the floor under every
// uncached FUSE operation, with and without emulated network delay.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "impl/common/storage_client.h"
#include "storage/server.h"
#include "util/stats.h"

namespace dfuse {
namespace {

using storage::StorageOptions;
using storage::StorageServer;

struct Fixture {
  Fixture() {
    spdlog::set_level(spdlog::level::warn);
    char tmpl[] = "/tmp/dfuse-rpc-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    std::filesystem::create_directory(dir + "/export");
    StorageOptions o;
    o.export_dir = dir + "/export";
    o.state_dir = dir + "/state";
    std::string error;
    server = StorageServer::Start(o, &error);
    if (!server) {
      std::fprintf(stderr, "storage: %s\n", error.c_str());
      std::abort();
    }
  }
  ~Fixture() {
    server.reset();
    std::filesystem::remove_all(dir);
  }
  std::string dir;
  std::unique_ptr<StorageServer> server;
};

Fixture& Shared() {
  static Fixture* f = new Fixture();
  return *f;
}

std::unique_ptr<StorageClient> Client(int64_t rtt_us, StatsRegistry* stats, uint64_t* root) {
  StorageClientOptions o;
  o.address = "127.0.0.1:" + std::to_string(Shared().server->port());
  o.emulated_rtt = std::chrono::microseconds(rtt_us);
  auto client = std::make_unique<StorageClient>(o, stats);
  proto::RootReply reply;
  std::string error;
  if (client->GetRoot(std::chrono::milliseconds(5000), &reply, &error) != 0) std::abort();
  *root = reply.attr().gfid();
  return client;
}

// GETATTR of the export's root: the smallest round trip.
void BM_GetAttr(benchmark::State& state) {
  StatsRegistry stats;
  uint64_t root = 0;
  auto client = Client(state.range(0), &stats, &root);
  proto::Attr attr;
  for (auto _ : state) benchmark::DoNotOptimize(client->GetAttr(root, &attr));
}
BENCHMARK(BM_GetAttr)->Arg(0)->Arg(100)->UseRealTime();

// A 4 KiB read of a file.
void BM_Read4K(benchmark::State& state) {
  StatsRegistry stats;
  uint64_t root = 0;
  auto client = Client(state.range(0), &stats, &root);
  proto::MakeRequest mk;
  mk.set_parent(root);
  mk.set_name("file-" + std::to_string(state.range(0)));
  mk.set_mode(0100644);
  proto::Attr attr;
  if (client->Create(mk, &attr) != 0 && client->Lookup(root, mk.name(), &attr) != 0) std::abort();
  proto::WriteRequest w;
  w.set_gfid(attr.gfid());
  w.add_chunks()->set_data(std::string(4096, 'x'));
  proto::WriteReply wr;
  client->Write(w, &wr);
  proto::ReadRequest r;
  r.set_gfid(attr.gfid());
  proto::Extent* e = r.add_extents();
  e->set_length(4096);
  proto::ReadReply reply;
  for (auto _ : state) {
    reply.Clear();
    benchmark::DoNotOptimize(client->Read(r, &reply));
  }
  state.SetBytesProcessed(state.iterations() * 4096);
}
BENCHMARK(BM_Read4K)->Arg(0)->Arg(100)->UseRealTime();

}  // namespace
}  // namespace dfuse
