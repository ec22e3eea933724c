// GFIDs survive restarts of the storage service, including kill -9.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/unit/storage/storage_test_env.h"
#include "util/gfid.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;
using StoragePersistenceTest = StorageTest;

TEST_F(StoragePersistenceTest, GfidsResolveAfterRestart) {
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  const auto f = Create(d.attr().gfid(), "f");
  ASSERT_EQ(f.err(), 0);
  ASSERT_EQ(Write(f.attr().gfid(), 0, "persistent data").err(), 0);
  ASSERT_EQ(Fsync(f.attr().gfid()), 0);
  const uint64_t old_root = root_;

  StopServer();
  StartServer();
  EXPECT_EQ(root_, old_root);
  const auto a = GetAttr(f.attr().gfid());
  ASSERT_EQ(a.err(), 0);
  EXPECT_EQ(a.attr().size(), 15u);
  EXPECT_EQ(a.attr().generation(), f.attr().generation());
  EXPECT_EQ(ReadString(f.attr().gfid(), 0, 100), "persistent data");
  EXPECT_EQ(Lookup(d.attr().gfid(), "f").attr().gfid(), f.attr().gfid());
  // Deleted meanwhile: stale, not some other file.
  ASSERT_EQ(::unlink((export_ + "/d/f").c_str()), 0);
  StopServer();
  StartServer();
  EXPECT_EQ(GetAttr(f.attr().gfid()).err(), ESTALE);
  EXPECT_EQ(GetAttr(d.attr().gfid()).err(), 0);
}

// When an inode number is reused, the log holds an older handle for the
// same local id. Resolving it fails with ESTALE (never reaching the new
// file), and a lookup of the new file replaces the entry for good.
TEST_F(StoragePersistenceTest, NewerHandleReplacesAReusedInodeNumber) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  ASSERT_EQ(Write(f.attr().gfid(), 0, "new file").err(), 0);
  StopServer();

  // Make the log name an older file under f's local id: f's handle with a
  // different generation, as ext4 writes handles (inode, generation).
  union {
    struct file_handle fh;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } u;
  u.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  ASSERT_EQ(::name_to_handle_at(AT_FDCWD, (export_ + "/f").c_str(), &u.fh, &mount_id, 0), 0);
  ASSERT_EQ(u.fh.handle_bytes, 8u);
  u.buf[sizeof(struct file_handle) + 4] ^= 0x5a;  // the generation
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < sizeof(struct file_handle) + u.fh.handle_bytes; i++) {
    hex += kHex[static_cast<unsigned char>(u.buf[i]) >> 4];
    hex += kHex[static_cast<unsigned char>(u.buf[i]) & 15];
  }
  {
    std::ofstream log(state_ + "/handles.log", std::ios::app);
    log << LocalOf(f.attr().gfid()) << " 99 " << hex << "\n";
  }

  StartServer();
  EXPECT_EQ(GetAttr(f.attr().gfid()).err(), ESTALE);
  const auto l = Lookup(root_, "f");
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.attr().gfid(), f.attr().gfid());
  EXPECT_EQ(l.attr().generation(), f.attr().generation());
  StopServer();
  StartServer();
  EXPECT_EQ(ReadString(f.attr().gfid(), 0, 100), "new file");
}

TEST_F(StoragePersistenceTest, StartRefusesBadSetups) {
  const int busy_port = server_->port();
  const std::string other = base_ + "/other";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  StorageOptions opt;
  opt.export_dir = other;
  opt.state_dir = state_;
  std::string error;
  EXPECT_FALSE(StorageServer::Start(opt, &error));
  EXPECT_NE(error.find("another export"), std::string::npos) << error;

  opt.state_dir = other + "/state";
  EXPECT_FALSE(StorageServer::Start(opt, &error));
  EXPECT_NE(error.find("inside the export"), std::string::npos) << error;
  opt.export_dir = base_ + "/missing";
  EXPECT_FALSE(StorageServer::Start(opt, &error));
  opt.export_dir = other;
  opt.state_dir = "";
  opt.shard_id = 0;
  EXPECT_FALSE(StorageServer::Start(opt, &error));
  opt.shard_id = 7;
  opt.listen = "127.0.0.1:" + std::to_string(busy_port);  // no silent SO_REUSEPORT
  EXPECT_FALSE(StorageServer::Start(opt, &error));
  EXPECT_EQ(error, "cannot listen on " + opt.listen);
  StopServer();
  opt.listen = "127.0.0.1:0";
  auto s = StorageServer::Start(opt, &error);
  ASSERT_TRUE(s) << error;
  EXPECT_TRUE(std::filesystem::is_directory(base_ + "/.other.dfuse-state"));
}

// Runs the real binary, kills it with SIGKILL and checks that every GFID it
// handed out (without any fsync) still resolves in a new process.
class StorageCrashTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    StopServer();  // this test uses the binary instead
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    StorageTest::TearDown();
  }

  void Spawn() {
    const std::string port_file = base_ + "/port";
    ::unlink(port_file.c_str());
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::execl(DFUSE_STORAGE_BIN, DFUSE_STORAGE_BIN, "--plaintext", "--export", export_.c_str(),
              "--state-dir", state_.c_str(), "--listen", "127.0.0.1:0", "--shard-id", "3",
              "--port-file", port_file.c_str(), "--log-level", "warn", nullptr);
      ::_exit(127);
    }
    int port = 0;
    for (int i = 0; i < 500 && port == 0; i++) {
      std::ifstream in(port_file);
      if (!(in >> port)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_GT(port, 0) << "server did not write its port file";
    stub_ = proto::Storage::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                        grpc::InsecureChannelCredentials()));
  }

  void Kill() {
    ASSERT_EQ(::kill(pid_, SIGKILL), 0);
    int status;
    ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
  }

  pid_t pid_ = -1;
};

TEST_F(StorageCrashTest, KillDashNineLosesNoHandle) {
  Spawn();
  const auto root = Call(&Stub::GetRoot, proto::RootRequest());
  ASSERT_EQ(root.err(), 0);
  EXPECT_EQ(root.shard_id(), 3u);
  EXPECT_EQ(ShardOf(root.attr().gfid()), 3u);
  const auto d = Mkdir(root.attr().gfid(), "d");
  ASSERT_EQ(d.err(), 0);
  const auto f = Create(d.attr().gfid(), "f");
  ASSERT_EQ(f.err(), 0);
  ASSERT_EQ(Write(f.attr().gfid(), 0, "before the crash").err(), 0);
  Kill();

  Spawn();
  EXPECT_EQ(ReadString(f.attr().gfid(), 0, 100), "before the crash");
  EXPECT_EQ(GetAttr(d.attr().gfid()).err(), 0);
  // A clean stop on SIGTERM exits 0.
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  int status;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace dfuse::storage::testing
