// A storage server on a temporary export, and typed helpers for its RPCs.
#ifndef DFUSE_TESTS_UNIT_STORAGE_STORAGE_TEST_ENV_H_
#define DFUSE_TESTS_UNIT_STORAGE_STORAGE_TEST_ENV_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proto/storage.grpc.pb.h"
#include "storage/server.h"
#include "util/caller.h"
#include "util/handle_keys.h"

namespace dfuse::storage::testing {

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // (Re)starts the server on the same export and state dir.
  void StartServer();
  void StopServer();

  // Calls one RPC as `as` (root by default), expecting the call itself
  // (not its errno) to succeed. It names every handle key replies have
  // handed out so far (a server that issues keys: handle_keys_, the binary).
  template <typename Req, typename Rep>
  Rep Call(grpc::Status (proto::Storage::Stub::*rpc)(grpc::ClientContext*, const Req&, Rep*),
           const Req& req, const Caller& as = Caller()) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kCallerKey, EncodeCaller(as));
    if (!keys_.empty()) {
      ctx.AddMetadata(kHandleKeysKey, EncodeHandleKeys({keys_.begin(), keys_.end()}));
    }
    Rep rep;
    const grpc::Status s = (stub_.get()->*rpc)(&ctx, req, &rep);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if constexpr (requires { rep.attr().handle_key(); }) Learn(rep.attr());
    return rep;
  }
  void Learn(const proto::Attr& attr) {
    if (attr.handle_key() != 0) keys_[attr.gfid()] = attr.handle_key();
  }

  proto::EntryReply Lookup(uint64_t parent, const std::string& name);
  proto::AttrReply GetAttr(uint64_t gfid);
  // New files belong to the caller `as`. The export's root is 0777, so
  // anyone may create there.
  proto::EntryReply Create(uint64_t parent, const std::string& name, uint32_t mode = 0644,
                           bool exclusive = true, const Caller& as = Caller());
  proto::EntryReply Mkdir(uint64_t parent, const std::string& name, uint32_t mode = 0755,
                          const Caller& as = Caller());
  proto::EntryReply Symlink(uint64_t parent, const std::string& name, const std::string& target);
  int Unlink(uint64_t parent, const std::string& name);
  int Rmdir(uint64_t parent, const std::string& name);
  int Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
             const std::string& new_name, uint32_t flags = 0);
  proto::WriteReply Write(uint64_t gfid, uint64_t offset, const std::string& data,
                          uint64_t token = 0);
  proto::ReadReply Read(uint64_t gfid, const std::vector<std::pair<uint64_t, uint64_t>>& extents);
  // Reads one extent; "" on error (checked with EXPECT).
  std::string ReadString(uint64_t gfid, uint64_t offset, uint64_t length);
  int Fsync(uint64_t gfid, bool datasync = false);
  // Lists a whole directory, `page` entries per call.
  std::vector<proto::DirEntry> ListDir(uint64_t gfid, uint32_t page, bool plus = false);

  // Server settings a fixture may change in its constructor.
  size_t max_cached_files_ = 4096;
  int threads_ = 0;
  AccessRules access_;  // trusting: no squashing
  bool handle_keys_ = false;  // calls name GFIDs without keys

  std::string base_;    // temporary directory holding the two below
  std::string export_;  // the exported directory
  std::string state_;   // the state directory
  std::unique_ptr<StorageServer> server_;
  std::unique_ptr<proto::Storage::Stub> stub_;
  uint64_t root_ = 0;      // GFID of the export root
  uint64_t root_key_ = 0;  // its handle key (handle_keys_)
  std::map<uint64_t, uint64_t> keys_;  // GFID -> handle key, learned by Call
};

// A directory's entry names in listing order.
std::vector<std::string> Names(const std::vector<proto::DirEntry>& entries);
// The names of the entries of a local directory, sorted, without . and ..
std::vector<std::string> LocalNames(const std::string& dir);
std::string ReadLocalFile(const std::string& path);

}  // namespace dfuse::storage::testing

#endif  // DFUSE_TESTS_UNIT_STORAGE_STORAGE_TEST_ENV_H_
