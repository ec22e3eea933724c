// Retries through StorageClient against a server that loses replies: a call
// that is not idempotent is applied once and reports what its first attempt
// did, thanks to its request id and the server's reply cache.
#include <stdio.h>  // RENAME_EXCHANGE
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "impl/common/storage_client.h"
#include "tests/unit/storage/storage_test_env.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;
using Names = std::vector<std::string>;

class StorageRetryTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    StorageClientOptions o;
    o.address = "127.0.0.1:" + std::to_string(server_->port());
    o.unavailable_timeout = std::chrono::seconds(20);
    client_ = std::make_unique<StorageClient>(o, &client_stats_);
  }
  void TearDown() override {
    client_.reset();
    StorageTest::TearDown();
  }

  static proto::MakeRequest MakeReq(uint64_t parent, const std::string& name, uint32_t mode) {
    proto::MakeRequest req;
    req.set_parent(parent);
    req.set_name(name);
    req.set_mode(mode);
    req.set_exclusive(true);
    return req;
  }

  // The reply of the next call of `rpc` is lost, once that call is applied.
  void LoseNextReply(const std::string& rpc) { ASSERT_TRUE(server_->InjectLostReplies(rpc, 1)); }
  // Attempts the client made again after a transport failure.
  uint64_t Retries() { return client_stats_.GetCounter("rpc.transport_failures")->Get(); }
  // Calls the server answered from its reply cache.
  uint64_t Replayed() { return server_->stats()->GetCounter("replayed_replies")->Get(); }

  grpc::Status RawMkdir(const proto::MakeRequest& req, proto::EntryReply* reply) {
    grpc::ClientContext ctx;
    return stub_->Mkdir(&ctx, req, reply);
  }

  StatsRegistry client_stats_;
  std::unique_ptr<StorageClient> client_;
};

TEST_F(StorageRetryTest, ExclusiveCreate) {
  LoseNextReply("Create");
  proto::Attr attr;
  ASSERT_EQ(client_->Create(MakeReq(root_, "f", S_IFREG | 0640), &attr), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(Replayed(), 1u);
  EXPECT_EQ(attr.gfid(), Lookup(root_, "f").attr().gfid());
  EXPECT_EQ(attr.mode(), S_IFREG | 0640u);
  EXPECT_EQ(LocalNames(export_), Names{"f"});
  // Real errors still come through: the cache answers retries only.
  EXPECT_EQ(client_->Create(MakeReq(root_, "f", 0640), &attr), EEXIST);
}

TEST_F(StorageRetryTest, Mknod) {
  LoseNextReply("Mknod");
  proto::Attr attr;
  ASSERT_EQ(client_->Mknod(MakeReq(root_, "fifo", S_IFIFO | 0600), &attr), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_TRUE(S_ISFIFO(attr.mode()));
  EXPECT_EQ(LocalNames(export_), Names{"fifo"});
}

TEST_F(StorageRetryTest, Mkdir) {
  LoseNextReply("Mkdir");
  proto::Attr attr;
  ASSERT_EQ(client_->Mkdir(MakeReq(root_, "d", 0750), &attr), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(Replayed(), 1u);
  EXPECT_EQ(attr.gfid(), Lookup(root_, "d").attr().gfid());
  EXPECT_EQ(attr.mode(), S_IFDIR | 0750u);
  EXPECT_EQ(LocalNames(export_), Names{"d"});
}

TEST_F(StorageRetryTest, Symlink) {
  LoseNextReply("Symlink");
  proto::MakeRequest req = MakeReq(root_, "l", 0777);
  req.set_target("some/target");
  proto::Attr attr;
  ASSERT_EQ(client_->Symlink(req, &attr), 0);
  EXPECT_EQ(Retries(), 1u);
  std::string target;
  ASSERT_EQ(client_->Readlink(attr.gfid(), &target), 0);
  EXPECT_EQ(target, "some/target");
  EXPECT_EQ(LocalNames(export_), Names{"l"});
}

TEST_F(StorageRetryTest, Link) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  LoseNextReply("Link");
  proto::Attr attr;
  ASSERT_EQ(client_->Link(f.attr().gfid(), root_, "g", &attr), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(Replayed(), 1u);
  EXPECT_EQ(attr.gfid(), f.attr().gfid());
  EXPECT_EQ(attr.nlink(), 2u);
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().nlink(), 2u);
  EXPECT_EQ(LocalNames(export_), (Names{"f", "g"}));
}

TEST_F(StorageRetryTest, Unlink) {
  ASSERT_EQ(Create(root_, "f").err(), 0);
  ASSERT_EQ(Create(root_, "keep").err(), 0);
  LoseNextReply("Unlink");
  ASSERT_EQ(client_->Unlink(root_, "f"), 0);  // not ENOENT from the retry
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(Replayed(), 1u);
  EXPECT_EQ(LocalNames(export_), Names{"keep"});
}

TEST_F(StorageRetryTest, Rmdir) {
  ASSERT_EQ(Mkdir(root_, "d").err(), 0);
  LoseNextReply("Rmdir");
  ASSERT_EQ(client_->Rmdir(root_, "d"), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(LocalNames(export_), Names{});
}

TEST_F(StorageRetryTest, RenameMovesOnce) {
  const auto a = Create(root_, "a");
  ASSERT_EQ(a.err(), 0);
  ASSERT_EQ(Write(a.attr().gfid(), 0, "payload").err(), 0);
  LoseNextReply("Rename");
  ASSERT_EQ(client_->Rename(root_, "a", root_, "b", 0), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(Replayed(), 1u);
  EXPECT_EQ(LocalNames(export_), Names{"b"});
  EXPECT_EQ(ReadLocalFile(export_ + "/b"), "payload");
}

// Applied twice, an exchange would undo itself without any error.
TEST_F(StorageRetryTest, RenameExchangeSwapsOnce) {
  ASSERT_EQ(Write(Create(root_, "x").attr().gfid(), 0, "X").err(), 0);
  ASSERT_EQ(Write(Create(root_, "y").attr().gfid(), 0, "Y").err(), 0);
  LoseNextReply("Rename");
  ASSERT_EQ(client_->Rename(root_, "x", root_, "y", RENAME_EXCHANGE), 0);
  EXPECT_EQ(Retries(), 1u);
  EXPECT_EQ(ReadLocalFile(export_ + "/x"), "Y");
  EXPECT_EQ(ReadLocalFile(export_ + "/y"), "X");
}

// Every call gets its own id: losing the replies of two calls in a row
// replays each one's own reply.
TEST_F(StorageRetryTest, EachCallHasItsOwnId) {
  ASSERT_TRUE(server_->InjectLostReplies("Mkdir", 2));
  proto::Attr a, b, c;
  ASSERT_EQ(client_->Mkdir(MakeReq(root_, "a", 0755), &a), 0);
  ASSERT_EQ(client_->Mkdir(MakeReq(root_, "b", 0755), &b), 0);
  EXPECT_EQ(Retries(), 2u);
  EXPECT_EQ(Replayed(), 2u);
  ASSERT_EQ(client_->Mkdir(MakeReq(root_, "c", 0755), &c), 0);
  EXPECT_EQ(Retries(), 2u);
  EXPECT_EQ(a.gfid(), Lookup(root_, "a").attr().gfid());
  EXPECT_EQ(b.gfid(), Lookup(root_, "b").attr().gfid());
  EXPECT_NE(a.gfid(), b.gfid());
  EXPECT_EQ(LocalNames(export_), (Names{"a", "b", "c"}));
}

// What the ids prevent: without one, the retry of an applied Mkdir fails.
TEST_F(StorageRetryTest, WithoutAnIdARetryIsAppliedAgain) {
  const proto::MakeRequest req = MakeReq(root_, "d", 0755);
  LoseNextReply("Mkdir");
  proto::EntryReply reply;
  EXPECT_EQ(RawMkdir(req, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);
  ASSERT_TRUE(RawMkdir(req, &reply).ok());
  EXPECT_EQ(reply.err(), EEXIST);

  proto::MakeRequest with_id = MakeReq(root_, "e", 0755);
  with_id.mutable_request_id()->set_client_id(42);
  with_id.mutable_request_id()->set_seq(1);
  LoseNextReply("Mkdir");
  EXPECT_EQ(RawMkdir(with_id, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);
  ASSERT_TRUE(RawMkdir(with_id, &reply).ok());
  EXPECT_EQ(reply.err(), 0);
  EXPECT_EQ(reply.attr().gfid(), Lookup(root_, "e").attr().gfid());
}

// An id names one call, not one RPC or one client: reused for another call
// it is refused, and neither call is confused with the other.
TEST_F(StorageRetryTest, AnIdReusedForAnotherCallIsRefused) {
  proto::MakeRequest a = MakeReq(root_, "a", 0755);
  a.mutable_request_id()->set_client_id(42);
  a.mutable_request_id()->set_seq(1);
  proto::EntryReply reply;
  ASSERT_TRUE(RawMkdir(a, &reply).ok());
  ASSERT_EQ(reply.err(), 0);
  const uint64_t gfid_a = reply.attr().gfid();

  proto::MakeRequest b = a;  // same id, other contents
  b.set_name("b");
  grpc::Status s = RawMkdir(b, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  proto::NameRequest rm;  // same id, other RPC
  rm.set_parent(root_);
  rm.set_name("a");
  *rm.mutable_request_id() = a.request_id();
  proto::UnlinkReply unlink_reply;
  grpc::ClientContext ctx;
  s = stub_->Unlink(&ctx, rm, &unlink_reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(LocalNames(export_), Names{"a"});

  // The original call's retry still gets its reply; a fresh id runs anew.
  ASSERT_TRUE(RawMkdir(a, &reply).ok());
  EXPECT_EQ(reply.err(), 0);
  EXPECT_EQ(reply.attr().gfid(), gfid_a);
  b.mutable_request_id()->set_seq(2);
  ASSERT_TRUE(RawMkdir(b, &reply).ok());
  EXPECT_EQ(reply.err(), 0);
  // The same seq of another client is another call.
  proto::MakeRequest c = MakeReq(root_, "c", 0755);
  c.mutable_request_id()->set_client_id(43);
  c.mutable_request_id()->set_seq(1);
  ASSERT_TRUE(RawMkdir(c, &reply).ok());
  EXPECT_EQ(reply.err(), 0);
  EXPECT_EQ(LocalNames(export_), (Names{"a", "b", "c"}));
}

// Idempotent calls carry no id; a lost reply is simply applied again.
TEST_F(StorageRetryTest, IdempotentCallsAreRetriedToo) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  LoseNextReply("Write");
  proto::WriteRequest w;
  w.set_gfid(f.attr().gfid());
  auto* chunk = w.add_chunks();
  chunk->set_offset(3);
  chunk->set_data("abc");
  proto::WriteReply wr;
  ASSERT_EQ(client_->Write(w, &wr), 0);
  EXPECT_EQ(wr.file_size(), 6u);
  LoseNextReply("Lookup");
  proto::Attr attr;
  ASSERT_EQ(client_->Lookup(root_, "f", &attr), 0);
  EXPECT_EQ(attr.gfid(), f.attr().gfid());
  EXPECT_EQ(Retries(), 2u);
  EXPECT_EQ(Replayed(), 0u);
  EXPECT_EQ(ReadLocalFile(export_ + "/f"), std::string("\0\0\0abc", 6));
}

// A policy hears of every change this client makes to a file on storage
// (what it knew of the file from before is old then), and of nothing else.
TEST_F(StorageRetryTest, EveryChangeToAFileIsToldBeforeAndAfterIt) {
  const uint64_t f = Create(root_, "f").attr().gfid();
  const uint64_t victim = Create(root_, "victim").attr().gfid();
  const uint64_t replaced = Create(root_, "replaced").attr().gfid();
  ASSERT_NE(f * victim * replaced, 0u);
  std::vector<uint64_t> told;
  client_->OnChange([&](uint64_t gfid) { told.push_back(gfid); });
  auto expect_told = [&](std::vector<uint64_t> want, const char* call) {
    EXPECT_EQ(told, want) << call;
    told.clear();
  };

  proto::Attr attr;
  proto::SetAttrRequest chmod;
  chmod.set_gfid(f);
  chmod.set_valid(proto::SETATTR_MODE);
  chmod.set_mode(0600);
  ASSERT_EQ(client_->SetAttr(chmod, &attr), 0);
  expect_told({f, f}, "SetAttr");
  proto::WriteRequest w;
  w.set_gfid(f);
  w.add_chunks()->set_data("abc");
  proto::WriteReply wr;
  ASSERT_EQ(client_->Write(w, &wr), 0);
  expect_told({f, f}, "Write");
  proto::FallocateRequest fa;
  fa.set_gfid(f);
  fa.set_length(4096);
  ASSERT_EQ(client_->Fallocate(fa), 0);
  expect_told({f, f}, "Fallocate");
  proto::XattrRequest x;
  x.set_gfid(f);
  x.set_name("user.k");
  x.set_value("v");
  ASSERT_EQ(client_->SetXattr(x), 0);
  expect_told({f, f}, "SetXattr");
  ASSERT_EQ(client_->RemoveXattr(x), 0);
  expect_told({f, f}, "RemoveXattr");
  ASSERT_EQ(client_->Link(f, root_, "g", &attr), 0);
  expect_told({f, f}, "Link");
  ASSERT_EQ(client_->Unlink(root_, "victim"), 0);
  expect_told({victim}, "Unlink (named by the reply)");
  ASSERT_EQ(client_->Rename(root_, "g", root_, "replaced", 0), 0);
  expect_told({replaced}, "Rename over a file");
  // A failed change may have been applied in part: told all the same.
  constexpr uint64_t kNoSuchFile = 0xdead;
  chmod.set_gfid(kNoSuchFile);
  EXPECT_NE(client_->SetAttr(chmod, &attr), 0);
  expect_told({kNoSuchFile, kNoSuchFile}, "a failed SetAttr");

  // Reads change nothing.
  ASSERT_EQ(client_->GetAttr(f, &attr), 0);
  ASSERT_EQ(client_->Lookup(root_, "f", &attr), 0);
  proto::ReadRequest r;
  r.set_gfid(f);
  r.add_extents()->set_length(3);
  proto::ReadReply rr;
  ASSERT_EQ(client_->Read(r, &rr), 0);
  expect_told({}, "GetAttr, Lookup, Read");
}

TEST_F(StorageRetryTest, UnknownRpcNamesAreRefused) {
  EXPECT_FALSE(server_->InjectLostReplies("mkdir", 1));
  EXPECT_FALSE(server_->InjectLostReplies("", 1));
  std::vector<std::pair<std::string, uint32_t>> parsed;
  std::string error;
  ASSERT_TRUE(ParseLostReplies("Mkdir:1,Rename:20", &parsed, &error)) << error;
  EXPECT_EQ(parsed, (std::vector<std::pair<std::string, uint32_t>>{{"Mkdir", 1}, {"Rename", 20}}));
  for (const char* bad : {"", "Mkdir", "Mkdir:", "Mkdir:0", "Mkdir:-1", "Mkdir:1,", "Nope:1",
                          "Mkdir:1x", "Mkdir:99999999999"}) {
    EXPECT_FALSE(ParseLostReplies(bad, &parsed, &error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

}  // namespace
}  // namespace dfuse::storage::testing
