// What mutual TLS costs on loopback, side by side with plain text in one
// run: a 4 KiB storage Write (the call a writethrough write(2) makes) and a
// lease Acquire -> Grant round trip. The argument is 0 for plain text, 1 for
// TLS. Certificates come from tools/dfuse-certs in a temporary directory.
// Run by hand (build/bench/tls_bench) or recorded with tools/bench-record
// (README, "Security").
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "impl/common/storage_client.h"
#include "lease/agent.h"
#include "lease/manager_service.h"
#include "storage/server.h"
#include "util/stats.h"
#include "util/tls.h"

namespace dfuse {
namespace {

namespace fs = std::filesystem;

// Aborts the run if a step failed, so that an error cannot pass for speed.
void Expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tls_bench: %s failed\n", what);
    std::abort();
  }
}

// A CA, a server certificate for 127.0.0.1 and a client certificate.
struct Certs {
  Certs() {
    spdlog::set_level(spdlog::level::warn);
    char tmpl[] = "/tmp/dfuse-tls-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    const std::string tool = std::string("/usr/bin/python3 ") + DFUSE_SOURCE_DIR +
                             "/tools/dfuse-certs",
                      d = dir + "/ca";
    for (const std::string& cmd :
         {tool + " ca " + d, tool + " issue " + d + " server --ip 127.0.0.1",
          tool + " issue " + d + " client"}) {
      Expect(std::system((cmd + " > /dev/null").c_str()) == 0, cmd.c_str());
    }
  }
  TlsFiles Files(bool tls, const std::string& name) const {
    if (!tls) return TlsFiles();
    return TlsFiles{dir + "/ca/ca.crt", dir + "/ca/" + name + ".crt", dir + "/ca/" + name + ".key"};
  }
  std::shared_ptr<grpc::ChannelCredentials> Client(bool tls) const {
    std::string error;
    auto creds = ChannelCredentials(Files(tls, "client"), &error);
    Expect(creds != nullptr, "client credentials");
    return creds;
  }
  std::string dir;
};

const Certs& Shared() {
  static const Certs* certs = [] {
    const Certs* made = new Certs();
    std::atexit([] { fs::remove_all(Shared().dir); });  // exports included
    return made;
  }();
  return *certs;
}

// One 4 KiB write at a random page-aligned offset of a 64 MiB file.
void BM_StorageWrite4K(benchmark::State& state) {
  const bool tls = state.range(0) != 0;
  const fs::path dir = Shared().dir + (tls ? "/export-tls" : "/export-plain");
  fs::create_directories(dir / "export");
  storage::StorageOptions so;
  so.export_dir = (dir / "export").string();
  so.state_dir = (dir / "state").string();
  so.tls = Shared().Files(tls, "server");
  std::string error;
  auto server = storage::StorageServer::Start(so, &error);
  Expect(server != nullptr, "storage start");
  StatsRegistry stats;
  StorageClientOptions co;
  co.address = "127.0.0.1:" + std::to_string(server->port());
  co.credentials = Shared().Client(tls);
  StorageClient client(co, &stats);
  proto::RootReply root;
  Expect(client.GetRoot(std::chrono::milliseconds(10000), &root, &error) == 0, "GetRoot");
  proto::MakeRequest mk;
  mk.set_parent(root.attr().gfid());
  mk.set_name("file");
  mk.set_mode(0100644);
  proto::Attr attr;
  Expect(client.Create(mk, &attr) == 0, "Create");
  proto::WriteRequest w;
  w.set_gfid(attr.gfid());
  proto::WriteChunk* chunk = w.add_chunks();
  chunk->set_data(std::string(4096, 'x'));
  proto::WriteReply reply;
  uint64_t page = 1;
  for (auto _ : state) {
    page = page * 6364136223846793005ULL + 1442695040888963407ULL;
    chunk->set_offset(((page >> 33) % 16384) * 4096);
    Expect(client.Write(w, &reply) == 0, "Write");
  }
  state.SetBytesProcessed(state.iterations() * 4096);
}
BENCHMARK(BM_StorageWrite4K)->ArgName("tls")->Arg(0)->Arg(1)->UseRealTime();

// Acquire on a file nobody holds: one Acquire -> Grant round trip.
void BM_LeaseAcquire(benchmark::State& state) {
  const bool tls = state.range(0) != 0;
  lease::ManagerOptions mo;
  mo.min_hold_ms = 0;
  mo.max_hold_ms = 0;
  mo.tls = Shared().Files(tls, "server");
  std::string error;
  auto manager = lease::ManagerServer::Start(mo, &error);
  Expect(manager != nullptr, "manager start");
  StatsRegistry stats;
  lease::LeaseAgentOptions ao;
  ao.manager = "127.0.0.1:" + std::to_string(manager->port());
  ao.credentials = Shared().Client(tls);
  lease::LeaseAgent agent(
      ao, [](uint64_t, lease::LeaseMode, std::chrono::milliseconds) {}, &stats);
  Expect(agent.Start(std::chrono::seconds(10), &error) == 0, "agent start");
  uint64_t gfid = 1;
  for (auto _ : state) {
    uint64_t token;
    Expect(agent.Acquire(gfid, lease::LeaseMode::kWrite, &token) == 0, "Acquire");
    agent.Release(gfid);
    gfid++;
  }
}
BENCHMARK(BM_LeaseAcquire)->ArgName("tls")->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace dfuse
