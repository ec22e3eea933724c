#include "tests/unit/storage/storage_test_env.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "storage/limits.h"

namespace dfuse::storage::testing {

void StorageTest::SetUp() {
  char tmpl[] = "/tmp/dfuse-storage-test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  base_ = tmpl;
  export_ = base_ + "/export";
  state_ = base_ + "/state";
  ASSERT_EQ(::mkdir(export_.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(export_.c_str(), 0777), 0);  // past the umask
  StartServer();
}

void StorageTest::TearDown() {
  StopServer();
  std::error_code ec;
  std::filesystem::remove_all(base_, ec);
}

void StorageTest::StartServer() {
  StorageOptions opt;
  opt.export_dir = export_;
  opt.state_dir = state_;
  opt.listen = "127.0.0.1:0";
  opt.max_cached_files = max_cached_files_;
  opt.threads = threads_;
  opt.access = access_;
  opt.handle_keys = handle_keys_;
  std::string error;
  server_ = StorageServer::Start(opt, &error);
  ASSERT_TRUE(server_) << error;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  stub_ = proto::Storage::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials(), args));
  // As the client's first contact: naming no user, which every rule allows.
  grpc::ClientContext ctx;
  proto::RootReply root;
  ASSERT_TRUE(stub_->GetRoot(&ctx, proto::RootRequest(), &root).ok());
  ASSERT_EQ(root.err(), 0);
  root_ = root.attr().gfid();
  root_key_ = root.attr().handle_key();
  Learn(root.attr());
}

void StorageTest::StopServer() {
  stub_.reset();
  server_.reset();
}

proto::EntryReply StorageTest::Lookup(uint64_t parent, const std::string& name) {
  proto::NameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  return Call(&proto::Storage::Stub::Lookup, req);
}

proto::AttrReply StorageTest::GetAttr(uint64_t gfid) {
  proto::GfidRequest req;
  req.set_gfid(gfid);
  return Call(&proto::Storage::Stub::GetAttr, req);
}

proto::EntryReply StorageTest::Create(uint64_t parent, const std::string& name, uint32_t mode,
                                      bool exclusive, const Caller& as) {
  proto::MakeRequest req;
  req.set_parent(parent);
  req.set_name(name);
  req.set_mode(mode);
  req.set_exclusive(exclusive);
  return Call(&proto::Storage::Stub::Create, req, as);
}

proto::EntryReply StorageTest::Mkdir(uint64_t parent, const std::string& name, uint32_t mode,
                                     const Caller& as) {
  proto::MakeRequest req;
  req.set_parent(parent);
  req.set_name(name);
  req.set_mode(mode);
  return Call(&proto::Storage::Stub::Mkdir, req, as);
}

proto::EntryReply StorageTest::Symlink(uint64_t parent, const std::string& name,
                                       const std::string& target) {
  proto::MakeRequest req;
  req.set_parent(parent);
  req.set_name(name);
  req.set_target(target);
  return Call(&proto::Storage::Stub::Symlink, req);
}

int StorageTest::Unlink(uint64_t parent, const std::string& name) {
  proto::NameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  return Call(&proto::Storage::Stub::Unlink, req).err();
}

int StorageTest::Rmdir(uint64_t parent, const std::string& name) {
  proto::NameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  return Call(&proto::Storage::Stub::Rmdir, req).err();
}

int StorageTest::Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                        const std::string& new_name, uint32_t flags) {
  proto::RenameRequest req;
  req.set_parent(parent);
  req.set_name(name);
  req.set_new_parent(new_parent);
  req.set_new_name(new_name);
  req.set_flags(flags);
  return Call(&proto::Storage::Stub::Rename, req).err();
}

proto::WriteReply StorageTest::Write(uint64_t gfid, uint64_t offset, const std::string& data,
                                     uint64_t token) {
  proto::WriteRequest req;
  req.set_gfid(gfid);
  req.set_fencing_token(token);
  auto* c = req.add_chunks();
  c->set_offset(offset);
  c->set_data(data);
  return Call(&proto::Storage::Stub::Write, req);
}

proto::ReadReply StorageTest::Read(uint64_t gfid,
                                   const std::vector<std::pair<uint64_t, uint64_t>>& extents) {
  proto::ReadRequest req;
  req.set_gfid(gfid);
  for (const auto& [off, len] : extents) {
    auto* e = req.add_extents();
    e->set_offset(off);
    e->set_length(len);
  }
  return Call(&proto::Storage::Stub::Read, req);
}

std::string StorageTest::ReadString(uint64_t gfid, uint64_t offset, uint64_t length) {
  const auto r = Read(gfid, {{offset, length}});
  EXPECT_EQ(r.err(), 0);
  return r.err() == 0 && r.data_size() == 1 ? r.data(0) : "";
}

int StorageTest::Fsync(uint64_t gfid, bool datasync) {
  proto::FsyncRequest req;
  req.set_gfid(gfid);
  req.set_datasync(datasync);
  return Call(&proto::Storage::Stub::Fsync, req).err();
}

std::vector<proto::DirEntry> StorageTest::ListDir(uint64_t gfid, uint32_t page, bool plus) {
  std::vector<proto::DirEntry> out;
  proto::ReadDirRequest req;
  req.set_gfid(gfid);
  req.set_max_entries(page);
  req.set_plus(plus);
  for (int calls = 0; calls < 100000; calls++) {
    const auto r = Call(&proto::Storage::Stub::ReadDir, req);
    EXPECT_EQ(r.err(), 0);
    EXPECT_LE(r.entries_size(), static_cast<int>(page));
    if (r.err() != 0) break;
    for (const auto& e : r.entries()) out.push_back(e);
    if (r.eof()) return out;
    EXPECT_GT(r.entries_size(), 0) << "no progress without eof";
    if (r.entries_size() == 0) break;
    req.set_offset(r.entries(r.entries_size() - 1).next_offset());
  }
  ADD_FAILURE() << "listing did not end";
  return out;
}

std::vector<std::string> Names(const std::vector<proto::DirEntry>& entries) {
  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.name());
  return names;
}

std::vector<std::string> LocalNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadLocalFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace dfuse::storage::testing
