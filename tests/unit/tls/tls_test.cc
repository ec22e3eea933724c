// Mutual TLS on the storage and lease manager links (util/tls.h), with
// certificates made by tools/dfuse-certs: a client with the cluster's
// certificate is served; one with no certificate, one from another CA or an
// expired one gets nothing, from either service.
#include "util/tls.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "impl/common/storage_client.h"
#include "lease/agent.h"
#include "lease/manager_service.h"
#include "storage/server.h"
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

  // A lease manager that requires the cluster's certificates.
  static std::unique_ptr<lease::ManagerServer> StartManager() {
    lease::ManagerOptions mo;
    mo.tls = Files("ca", "server");
    std::string error;
    auto manager = lease::ManagerServer::Start(mo, &error);
    EXPECT_NE(manager, nullptr) << error;
    return manager;
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
  const fs::path export_dir = *dir_ / "export";
  fs::create_directories(export_dir);
  storage::StorageOptions so;
  so.export_dir = export_dir.string();
  so.tls = Files("ca", "server");
  std::string error;
  auto server = storage::StorageServer::Start(so, &error);
  ASSERT_NE(server, nullptr) << error;
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
        ao, [](uint64_t, lease::LeaseMode) {}, &stats);
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
        ao, [](uint64_t, lease::LeaseMode) {}, stats);
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
