// Mutual TLS on the storage and lease manager links (util/tls.h), with
// certificates made by tools/dfuse-certs: a client with the cluster's
// certificate is served; one with no certificate, one from another CA or an
// expired one gets nothing, from either service. And the bounds that keep
// one client, identified by its certificate, from crowding out the others.
#include "util/tls.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "impl/common/storage_client.h"
#include "lease/agent.h"
#include "lease/limits.h"
#include "lease/manager_service.h"
#include "proto/lease.grpc.pb.h"
#include "proto/storage.grpc.pb.h"
#include "storage/access.h"
#include "storage/client_limits.h"
#include "storage/limits.h"
#include "storage/server.h"
#include "util/fencing_key.h"
#include "util/stats.h"

namespace dfuse {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// One set of certificates for the whole suite (making keys takes a while).
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("dfuse-tls-test-" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    const std::string certs =
        std::string("/usr/bin/python3 ") + DFUSE_SOURCE_DIR + "/tools/dfuse-certs";
    const std::string d = (*dir_ / "ca").string(), other = (*dir_ / "other").string();
    for (const std::string& cmd :
         {certs + " ca " + d, certs + " issue " + d + " server --ip 127.0.0.1",
          certs + " issue " + d + " client", certs + " issue " + d + " other-client",
          certs + " issue " + d + " writer",
          certs + " issue " + d + " expired --not-before 2020-01-01 --not-after 2020-02-01",
          certs + " ca " + other + " --name other", certs + " issue " + other + " stranger"}) {
      ASSERT_EQ(std::system((cmd + " > /dev/null").c_str()), 0) << cmd;
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static TlsFiles Files(const std::string& ca_dir, const std::string& name) {
    const fs::path d = *dir_ / ca_dir;
    return TlsFiles{(d / "ca.crt").string(), (d / (name + ".crt")).string(),
                    (d / (name + ".key")).string()};
  }
  // The credentials of each kind of client.
  static std::shared_ptr<grpc::ChannelCredentials> Client(const std::string& who) {
    std::string error;
    TlsFiles files;  // "none": plain text
    if (who == "cluster") files = Files("ca", "client");
    if (who == "other CA") files = Files("other", "stranger");
    if (who == "expired") files = Files("ca", "expired");
    auto creds = ChannelCredentials(files, &error);
    EXPECT_NE(creds, nullptr) << error;
    return creds;
  }

  // A storage service that requires the cluster's certificates, exporting
  // a fresh directory `name` under the suite's directory.
  static std::unique_ptr<storage::StorageServer> StartStorage(
      const std::string& name, storage::AccessRules access = storage::AccessRules(),
      std::shared_ptr<const FencingKey> fencing_key = nullptr) {
    const fs::path export_dir = *dir_ / name;
    fs::create_directories(export_dir);
    storage::StorageOptions so;
    so.export_dir = export_dir.string();
    so.tls = Files("ca", "server");
    so.access = std::move(access);
    so.fencing_key = std::move(fencing_key);
    std::string error;
    auto server = storage::StorageServer::Start(so, &error);
    EXPECT_NE(server, nullptr) << error;
    return server;
  }

  // A storage client of `server` presenting the certificate `cert`.
  static std::unique_ptr<StorageClient> StorageClientFor(const storage::StorageServer& server,
                                                         const std::string& cert,
                                                         StatsRegistry* stats) {
    std::string error;
    StorageClientOptions co;
    co.address = "127.0.0.1:" + std::to_string(server.port());
    co.credentials = ChannelCredentials(Files("ca", cert), &error);
    EXPECT_NE(co.credentials, nullptr) << error;
    return std::make_unique<StorageClient>(co, stats);
  }

  // A lease manager that requires the cluster's certificates.
  static std::unique_ptr<lease::ManagerServer> StartManager(
      lease::ManagerOptions mo = lease::ManagerOptions()) {
    mo.tls = Files("ca", "server");
    std::string error;
    auto manager = lease::ManagerServer::Start(mo, &error);
    EXPECT_NE(manager, nullptr) << error;
    return manager;
  }
  // A storage service and a lease manager sharing a fencing key.
  struct Fenced {
    std::shared_ptr<const FencingKey> key;
    std::unique_ptr<storage::StorageServer> storage;
    std::unique_ptr<lease::ManagerServer> manager;
  };
  static Fenced StartFenced(const std::string& export_name) {
    Fenced f;
    f.key = std::make_shared<const FencingKey>(std::string(32, 'k'));
    f.storage = StartStorage(export_name, storage::AccessRules(), f.key);
    lease::ManagerOptions mo;
    mo.fencing_key = f.key;
    f.manager = StartManager(mo);
    return f;
  }
  // Creates regular file `name` in the root through `client`; 0 on failure.
  static uint64_t CreateInRoot(StorageClient* client, const std::string& name) {
    std::string error;
    proto::RootReply root;
    EXPECT_EQ(client->GetRoot(milliseconds(10000), &root, &error), 0) << error;
    proto::MakeRequest make;
    make.set_parent(root.attr().gfid());
    make.set_name(name);
    make.set_mode(S_IFREG | 0644);
    proto::Attr file;
    EXPECT_EQ(client->Create(make, &file), 0);
    return file.gfid();
  }

  static lease::LeaseAgentOptions AgentOptions(const lease::ManagerServer& manager,
                                               const std::string& name,
                                               std::shared_ptr<grpc::ChannelCredentials> creds) {
    lease::LeaseAgentOptions ao;
    ao.manager = "127.0.0.1:" + std::to_string(manager.port());
    ao.name = name;
    ao.credentials = std::move(creds);
    return ao;
  }

  static fs::path* dir_;
};
fs::path* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, StorageServesOnlyClientsWithTheClusterCertificate) {
  auto server = StartStorage("export");
  ASSERT_NE(server, nullptr);
  std::string error;
  for (const std::string who : {"cluster", "none", "other CA", "expired"}) {
    StatsRegistry stats;
    StorageClientOptions co;
    co.address = "127.0.0.1:" + std::to_string(server->port());
    co.credentials = Client(who);
    StorageClient client(co, &stats);
    proto::RootReply root;
    const int err = client.GetRoot(milliseconds(who == "cluster" ? 10000 : 1500), &root, &error);
    if (who == "cluster") {
      EXPECT_EQ(err, 0) << error;
      EXPECT_NE(root.attr().gfid(), 0u);
    } else {
      EXPECT_EQ(err, EIO) << who << " was served";
    }
  }
}

TEST_F(TlsTest, LeaseManagerServesOnlyClientsWithTheClusterCertificate) {
  auto manager = StartManager();
  ASSERT_NE(manager, nullptr);
  std::string error;
  for (const std::string who : {"cluster", "none", "other CA", "expired"}) {
    StatsRegistry stats;
    const lease::LeaseAgentOptions ao = AgentOptions(*manager, who, Client(who));
    lease::LeaseAgent agent(
        ao, [](uint64_t, lease::LeaseMode, std::chrono::milliseconds) {}, &stats);
    const int err = agent.Start(milliseconds(who == "cluster" ? 10000 : 1500), &error);
    if (who == "cluster") {
      ASSERT_EQ(err, 0) << error;
      uint64_t token = 0;
      EXPECT_EQ(agent.Acquire(7, lease::LeaseMode::kWrite, &token), 0);
      EXPECT_GT(token, 0u);
    } else {
      EXPECT_NE(err, 0) << who << " got a session";
    }
  }
}

// A client id is no credential: a session belongs to the certificate that
// opened it, and another certificate naming the same id cannot resume it
// (and so cannot release, renew or ack for it).
TEST_F(TlsTest, ASessionBelongsToTheCertificateThatOpenedIt) {
  auto manager = StartManager();
  ASSERT_NE(manager, nullptr);
  std::string error;
  auto agent_of = [&](const std::string& name, StatsRegistry* stats) {
    lease::LeaseAgentOptions ao =
        AgentOptions(*manager, name, ChannelCredentials(Files("ca", name), &error));
    ao.client_id = 42;
    return std::make_unique<lease::LeaseAgent>(
        ao, [](uint64_t, lease::LeaseMode, std::chrono::milliseconds) {}, stats);
  };
  StatsRegistry stats_a, stats_b;
  auto owner = agent_of("client", &stats_a);
  ASSERT_EQ(owner->Start(milliseconds(10000), &error), 0) << error;
  uint64_t token = 0;
  ASSERT_EQ(owner->Acquire(9, lease::LeaseMode::kWrite, &token), 0);

  auto impostor = agent_of("other-client", &stats_b);
  EXPECT_EQ(impostor->Start(milliseconds(1500), &error), EIO);
  EXPECT_NE(error.find("belongs to another client"), std::string::npos) << error;
  impostor.reset();
  EXPECT_TRUE(owner->Holds(9, lease::LeaseMode::kWrite));
  uint64_t again = 0;
  EXPECT_EQ(owner->Acquire(10, lease::LeaseMode::kWrite, &again), 0);  // still served
}

TEST_F(TlsTest, MissingOrBadFilesAreOneLineErrors) {
  std::string error;
  TlsFiles partial = Files("ca", "client");
  partial.key.clear();
  EXPECT_EQ(ChannelCredentials(partial, &error), nullptr);
  EXPECT_NE(error.find("--tls-key"), std::string::npos) << error;
  TlsFiles missing = Files("ca", "nobody");
  EXPECT_EQ(ServerCredentials(missing, "127.0.0.1:0", &error), nullptr);
  EXPECT_NE(error.find("nobody.crt"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

// A client certificate opens at most max_sessions_per_client sessions;
// a message past the size bound is refused; the other clients keep being
// served either way.
TEST_F(TlsTest, OneClientCannotCrowdOutTheOthersAtTheLeaseManager) {
  lease::ManagerOptions mo;
  mo.max_sessions_per_client = 2;
  auto manager = StartManager(mo);
  ASSERT_NE(manager, nullptr);
  std::string error;
  std::vector<std::unique_ptr<StatsRegistry>> stats;
  std::vector<std::unique_ptr<lease::LeaseAgent>> agents;
  auto start = [&](const std::string& cert) {
    stats.push_back(std::make_unique<StatsRegistry>());
    agents.push_back(std::make_unique<lease::LeaseAgent>(
        AgentOptions(*manager, cert, ChannelCredentials(Files("ca", cert), &error)),
        [](uint64_t, lease::LeaseMode, std::chrono::milliseconds) {}, stats.back().get()));
    return agents.back()->Start(milliseconds(10000), &error);
  };
  ASSERT_EQ(start("client"), 0) << error;
  ASSERT_EQ(start("client"), 0) << error;
  EXPECT_EQ(start("client"), EIO);
  EXPECT_NE(error.find("sessions"), std::string::npos) << error;
  ASSERT_EQ(start("other-client"), 0) << error;

  // A Hello past the size bound: the stream fails, the manager stays.
  auto stub = proto::LeaseManager::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(manager->port()),
                          ChannelCredentials(Files("ca", "other-client"), &error)));
  grpc::ClientContext ctx;
  auto stream = stub->Session(&ctx);
  proto::ClientMessage huge;
  huge.mutable_hello()->set_client_id(77);
  huge.mutable_hello()->set_name(std::string(lease::kMaxLeaseMessageBytes + 1, 'x'));
  stream->Write(huge);
  stream->WritesDone();
  proto::ManagerMessage reply;
  EXPECT_FALSE(stream->Read(&reply));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  uint64_t token = 0;
  EXPECT_EQ(agents.back()->Acquire(11, lease::LeaseMode::kWrite, &token), 0);
  EXPECT_EQ(agents.front()->Acquire(12, lease::LeaseMode::kWrite, &token), 0);
}

TEST_F(TlsTest, AnOversizedStorageCallIsRefusedAndOthersAreServed) {
  auto server = StartStorage("export-big");
  ASSERT_NE(server, nullptr);
  std::string error;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);  // the client does not stop it: the server must
  auto stub = proto::Storage::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server->port()),
                                ChannelCredentials(Files("ca", "client"), &error), args));
  proto::WriteRequest big;
  big.set_gfid(1);
  big.add_chunks()->set_data(std::string(storage::kMaxMessageBytes + 1, 'x'));
  proto::WriteReply reply;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub->Write(&ctx, big, &reply).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  StatsRegistry stats;
  StorageClientOptions co;
  co.address = "127.0.0.1:" + std::to_string(server->port());
  co.credentials = Client("cluster");
  StorageClient client(co, &stats);
  proto::RootReply root;
  EXPECT_EQ(client.GetRoot(milliseconds(10000), &root, &error), 0) << error;
}

// Export rights by certificate (storage's --access): a read-only client
// reads but changes nothing, a client with no access gets no call at all,
// and a client no rule names gets the default.
TEST_F(TlsTest, StorageGivesEachClientItsAccess) {
  const fs::path export_dir = *dir_ / "export-access";
  std::string error;
  storage::AccessRules access;
  ASSERT_TRUE(
      storage::AccessRules::Parse({"client=ro", "other-client=none"}, "rw,no_root_squash",
                                  &access, &error))
      << error;
  auto server = StartStorage("export-access", access);
  ASSERT_NE(server, nullptr);
  auto client_with = [&](const std::string& cert, StatsRegistry* stats) {
    return StorageClientFor(*server, cert, stats);
  };
  StatsRegistry s1, s2, s3;
  auto writer = client_with("writer", &s1);
  auto reader = client_with("client", &s2);
  auto outsider = client_with("other-client", &s3);
  proto::RootReply root;
  ASSERT_EQ(writer->GetRoot(milliseconds(10000), &root, &error), 0) << error;
  const uint64_t root_gfid = root.attr().gfid();
  auto make = [&](StorageClient* c, const std::string& name, proto::Attr* attr) {
    proto::MakeRequest req;
    req.set_parent(root_gfid);
    req.set_name(name);
    req.set_mode(S_IFREG | 0644);
    return c->Create(req, attr);
  };
  proto::Attr file;
  ASSERT_EQ(make(writer.get(), "by-writer", &file), 0);

  ASSERT_EQ(reader->GetRoot(milliseconds(10000), &root, &error), 0) << error;
  proto::Attr seen;
  EXPECT_EQ(reader->Lookup(root_gfid, "by-writer", &seen), 0);
  EXPECT_EQ(seen.gfid(), file.gfid());
  proto::Attr none;
  EXPECT_EQ(make(reader.get(), "by-reader", &none), EROFS);
  proto::WriteRequest w;
  w.set_gfid(file.gfid());
  proto::WriteChunk* chunk = w.add_chunks();
  chunk->set_data("x");
  proto::WriteReply wr;
  EXPECT_EQ(reader->Write(w, &wr), EROFS);
  EXPECT_EQ(reader->Unlink(root_gfid, "by-writer"), EROFS);
  EXPECT_FALSE(fs::exists(export_dir / "by-reader"));
  EXPECT_EQ(fs::file_size(export_dir / "by-writer"), 0u);

  EXPECT_EQ(outsider->GetRoot(milliseconds(10000), &root, &error), EACCES);
  EXPECT_NE(error.find("refused this client"), std::string::npos) << error;
  EXPECT_EQ(outsider->Lookup(root_gfid, "by-writer", &seen), EACCES);
  EXPECT_EQ(writer->Unlink(root_gfid, "by-writer"), 0);  // the writer still may
}

// A fencing token counts at storage only with the proof the lease manager
// granted with it, for the client it was granted to: a client can neither
// make a token up nor use another client's.
TEST_F(TlsTest, FencingTokensNeedTheProofTheirManagerGave) {
  const Fenced fenced = StartFenced("export-fencing");
  ASSERT_NE(fenced.storage, nullptr);
  ASSERT_NE(fenced.manager, nullptr);
  const auto& key = fenced.key;
  const auto& manager = fenced.manager;
  std::string error;
  StatsRegistry s1, s2, s3;
  auto writer = StorageClientFor(*fenced.storage, "writer", &s1);
  auto other = StorageClientFor(*fenced.storage, "other-client", &s2);
  proto::RootReply root;
  ASSERT_EQ(other->GetRoot(milliseconds(10000), &root, &error), 0) << error;
  proto::Attr file;
  file.set_gfid(CreateInRoot(writer.get(), "fenced"));
  ASSERT_NE(file.gfid(), 0u);

  lease::LeaseAgent agent(
      AgentOptions(*manager, "writer", ChannelCredentials(Files("ca", "writer"), &error)), nullptr,
      &s3);
  ASSERT_EQ(agent.Start(milliseconds(10000), &error), 0) << error;
  uint64_t token = 0;
  ASSERT_EQ(agent.Acquire(file.gfid(), lease::LeaseMode::kWrite, &token), 0);
  ASSERT_NE(token, 0u);
  const std::string proof = agent.Proof(file.gfid(), token);
  EXPECT_TRUE(key->Verify(file.gfid(), token, "writer", proof));

  auto write = [&](StorageClient* c, uint64_t t, const std::string& p) {
    proto::WriteRequest w;
    w.set_gfid(file.gfid());
    w.set_fencing_token(t);
    w.set_fencing_proof(p);
    proto::WriteChunk* chunk = w.add_chunks();
    chunk->set_data("x");
    proto::WriteReply wr;
    return c->Write(w, &wr);
  };
  EXPECT_EQ(write(writer.get(), token + 1000, proof), EACCES) << "a token made up";
  EXPECT_EQ(write(writer.get(), token + 1000, ""), EACCES) << "a token made up, no proof";
  EXPECT_EQ(write(other.get(), token, proof), EACCES) << "another client's token";
  EXPECT_EQ(write(writer.get(), token, proof), 0) << "the holder's own token";
  proto::FallocateRequest f;
  f.set_gfid(file.gfid());
  f.set_length(4096);
  f.set_fencing_token(token);
  EXPECT_EQ(writer->Fallocate(f), EACCES) << "the holder's token without its proof";
  f.set_fencing_proof(proof);
  EXPECT_EQ(writer->Fallocate(f), 0);
  EXPECT_EQ(fs::file_size(*dir_ / "export-fencing" / "fenced"), 4096u);
  agent.Shutdown();
}

// What a WRITE holder's write-back left the file as goes with its ack to
// the next holder, but only as storage said it: storage proves the
// attributes of a durable write to the writer's token, and the manager
// drops a hand-off without that proof.
TEST_F(TlsTest, AHandoffReachesTheNextHolderOnlyWithStoragesProof) {
  const Fenced fenced = StartFenced("export-handoff");
  ASSERT_NE(fenced.storage, nullptr);
  ASSERT_NE(fenced.manager, nullptr);
  const auto& key = fenced.key;
  const auto& manager = fenced.manager;
  std::string error;
  StatsRegistry s1, s2, s3;
  auto storage = StorageClientFor(*fenced.storage, "writer", &s1);
  proto::Attr file;
  file.set_gfid(CreateInRoot(storage.get(), "handed"));
  ASSERT_NE(file.gfid(), 0u);

  // The writer's revoke handler hands over whatever the test puts here.
  std::mutex mu;
  std::string handoff, handoff_proof;
  lease::LeaseAgent* writer_agent = nullptr;
  lease::LeaseAgent writer(
      AgentOptions(*manager, "writer", ChannelCredentials(Files("ca", "writer"), &error)),
      [&](uint64_t gfid, lease::LeaseMode, std::chrono::milliseconds) {
        std::lock_guard<std::mutex> l(mu);
        writer_agent->HandOff(gfid, handoff, handoff_proof);
      },
      &s2);
  writer_agent = &writer;
  lease::LeaseAgent reader(
      AgentOptions(*manager, "other-client",
                   ChannelCredentials(Files("ca", "other-client"), &error)),
      [](uint64_t, lease::LeaseMode, std::chrono::milliseconds) {}, &s3);
  ASSERT_EQ(writer.Start(milliseconds(10000), &error), 0) << error;
  ASSERT_EQ(reader.Start(milliseconds(10000), &error), 0) << error;

  uint64_t token = 0;
  ASSERT_EQ(writer.Acquire(file.gfid(), lease::LeaseMode::kWrite, &token), 0);
  proto::WriteRequest w;
  w.set_gfid(file.gfid());
  w.set_fencing_token(token);
  w.set_fencing_proof(writer.Proof(file.gfid(), token));
  proto::WriteChunk* chunk = w.add_chunks();
  chunk->set_data("12345");
  w.set_durable(true);
  proto::WriteReply wr;
  ASSERT_EQ(storage->Write(w, &wr), 0);
  proto::Handoff after;
  ASSERT_TRUE(after.ParseFromString(wr.handoff()));
  EXPECT_EQ(after.attrs().gfid(), file.gfid());
  EXPECT_EQ(after.attrs().size(), 5u);
  EXPECT_TRUE(key->VerifyHandoff(file.gfid(), token, wr.handoff(), wr.handoff_proof()));
  const std::string attrs = wr.handoff(), proof = wr.handoff_proof();
  w.set_durable(false);
  ASSERT_EQ(storage->Write(w, &wr), 0);
  EXPECT_TRUE(wr.handoff().empty()) << "only a durable write-back hands over";

  {
    std::lock_guard<std::mutex> l(mu);
    handoff = attrs;
    handoff_proof = proof;
  }
  std::string got;
  ASSERT_EQ(reader.Acquire(file.gfid(), lease::LeaseMode::kRead, nullptr), 0);
  ASSERT_TRUE(reader.Handoff(file.gfid(), &got));
  EXPECT_EQ(got, attrs);
  ASSERT_TRUE(reader.Handoff(file.gfid(), &got)) << "for as long as the lease is held";
  reader.DropHandoff(file.gfid());  // the reader changed the file
  EXPECT_FALSE(reader.Handoff(file.gfid(), &got));
  EXPECT_EQ(s3.GetCounter("lease.handoffs_received")->Get(), 1u);
  EXPECT_EQ(s3.GetCounter("lease.handoffs_dropped")->Get(), 1u);
  EXPECT_EQ(s3.GetCounter("lease.handoff_misses")->Get(), 1u);

  // Attributes storage never said, or said of another write, are dropped;
  // so are the bytes written, which a writer could otherwise hide.
  ASSERT_EQ(writer.Acquire(file.gfid(), lease::LeaseMode::kWrite, &token), 0);
  proto::Handoff forged = after;
  forged.mutable_attrs()->set_size(1 << 30);
  {
    std::lock_guard<std::mutex> l(mu);
    handoff = forged.SerializeAsString();  // with the old proof
  }
  ASSERT_EQ(reader.Acquire(file.gfid(), lease::LeaseMode::kRead, nullptr), 0);
  EXPECT_FALSE(reader.Handoff(file.gfid(), &got)) << got.size();
  EXPECT_EQ(manager->Stats()["lease"]["handoffs_refused"].get<int>(), 1);
  ASSERT_EQ(writer.Acquire(file.gfid(), lease::LeaseMode::kWrite, &token), 0);
  forged = after;  // claims to know that nothing was written
  forged.clear_written();
  forged.set_written_known(!after.written_known());
  {
    std::lock_guard<std::mutex> l(mu);
    handoff = forged.SerializeAsString();
  }
  ASSERT_EQ(reader.Acquire(file.gfid(), lease::LeaseMode::kRead, nullptr), 0);
  EXPECT_FALSE(reader.Handoff(file.gfid(), &got)) << got.size();
  EXPECT_EQ(manager->Stats()["lease"]["handoffs_refused"].get<int>(), 2);
  reader.Shutdown();
  writer.Shutdown();
}

TEST(FencingKeyTest, KeyFilesAreCheckedAndProofsBindEveryPart) {
  const fs::path d = fs::temp_directory_path() / ("dfuse-fkey-" + std::to_string(::getpid()));
  fs::create_directories(d);
  std::string error;
  const fs::path shortkey = d / "short", open = d / "open", good = d / "good";
  for (const auto& [path, bytes, mode] :
       {std::tuple{shortkey, std::string(16, 's'), 0600}, std::tuple{open, std::string(32, 'o'), 0644},
        std::tuple{good, std::string(40, 'g') + "\n", 0600}}) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(bytes.c_str(), f);
    std::fclose(f);
    ::chmod(path.c_str(), mode);
  }
  EXPECT_EQ(FencingKey::Load((d / "missing").string(), &error), nullptr);
  EXPECT_NE(error.find("missing"), std::string::npos) << error;
  EXPECT_EQ(FencingKey::Load(shortkey.string(), &error), nullptr);
  EXPECT_NE(error.find("shorter than 32"), std::string::npos) << error;
  EXPECT_EQ(FencingKey::Load(open.string(), &error), nullptr);
  EXPECT_NE(error.find("chmod 600"), std::string::npos) << error;
  auto key = FencingKey::Load(good.string(), &error);
  ASSERT_NE(key, nullptr) << error;
  const std::string p = key->Prove(7, 9, "c01");
  EXPECT_EQ(p.size(), FencingKey::kProofBytes);
  EXPECT_TRUE(key->Verify(7, 9, "c01", p));
  EXPECT_FALSE(key->Verify(8, 9, "c01", p));
  EXPECT_FALSE(key->Verify(7, 10, "c01", p));
  EXPECT_FALSE(key->Verify(7, 9, "c02", p));
  EXPECT_FALSE(key->Verify(7, 9, "c01", p.substr(1)));
  EXPECT_FALSE(FencingKey(std::string(40, 'h')).Verify(7, 9, "c01", p)) << "another key";
  const std::string a = key->ProveHandoff(7, 9, "attrs");
  EXPECT_EQ(a.size(), FencingKey::kProofBytes);
  EXPECT_TRUE(key->VerifyHandoff(7, 9, "attrs", a));
  EXPECT_FALSE(key->VerifyHandoff(8, 9, "attrs", a));
  EXPECT_FALSE(key->VerifyHandoff(7, 10, "attrs", a));
  EXPECT_FALSE(key->VerifyHandoff(7, 9, "attrz", a));
  EXPECT_FALSE(key->VerifyHandoff(7, 9, "c01", p)) << "a token's proof proves no attributes";
  EXPECT_FALSE(key->Verify(7, 9, "attrs", a)) << "nor the other way round";
  fs::remove_all(d);
}

TEST(AccessRulesTest, BadRulesAreOneLineErrors) {
  storage::AccessRules rules;
  std::string error;
  EXPECT_FALSE(storage::AccessRules::Parse({"c01=rx"}, "rw", &rules, &error));
  EXPECT_NE(error.find("c01=rx"), std::string::npos) << error;
  EXPECT_FALSE(storage::AccessRules::Parse({"=ro"}, "rw", &rules, &error));
  EXPECT_FALSE(storage::AccessRules::Parse({"c01=ro", "c01=rw"}, "rw", &rules, &error));
  EXPECT_NE(error.find("second time"), std::string::npos) << error;
  EXPECT_FALSE(storage::AccessRules::Parse({}, "all", &rules, &error));
  ASSERT_TRUE(storage::AccessRules::Parse({"c01=ro", "c02=none"}, "rw", &rules, &error));
  EXPECT_EQ(rules.For("c01").access, storage::Access::kReadOnly);
  EXPECT_EQ(rules.For("c02").access, storage::Access::kNone);
  EXPECT_EQ(rules.For("c03").access, storage::Access::kReadWrite);
  EXPECT_EQ(rules.For("").access, storage::Access::kReadWrite);
  EXPECT_TRUE(rules.For("").SquashesRoot());  // the daemon's rules squash root by default
}

// The storage service's bound on one client's calls in progress.
TEST(ClientLimitsTest, CallsPastTheBoundAreRefusedUntilOneEnds) {
  storage::ClientLimits limits(2);
  grpc::ServerContext ctx;  // no call: every such context is one client
  auto a = limits.Enter(&ctx, "");
  auto b = limits.Enter(&ctx, "");
  EXPECT_TRUE(a && b);
  {
    auto c = limits.Enter(&ctx, "");
    EXPECT_FALSE(c);
  }
  { auto moved = std::move(b); }  // the call ends
  auto d = limits.Enter(&ctx, "");
  EXPECT_TRUE(d);
  EXPECT_TRUE(limits.Enter(nullptr, ""));  // in-process callers are not counted
  // Each certificate has its own bound.
  auto e = limits.Enter(&ctx, "c01");
  auto f = limits.Enter(&ctx, "c01");
  EXPECT_TRUE(e && f);
  EXPECT_FALSE(limits.Enter(&ctx, "c01"));
  EXPECT_TRUE(limits.Enter(&ctx, "c02"));
  storage::ClientLimits unbounded(0);
  std::vector<storage::ClientLimits::Slot> many;
  for (int i = 0; i < 1000; i++) many.push_back(unbounded.Enter(&ctx, ""));
  EXPECT_TRUE(many.back());
}

TEST(TlsAddressTest, LoopbackAddresses) {
  for (const char* a : {"127.0.0.1:1", "127.3.2.1:0", "localhost:5", "[::1]:7"}) {
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  }
  for (const char* a : {"10.0.0.1:1", "0.0.0.0:5", "[::]:7", "example.org:80", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
  }
}

}  // namespace
}  // namespace dfuse
