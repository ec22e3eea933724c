// Data calls (batched Read/Write, Fallocate), fencing, and ReadDir paging.
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>

#include "tests/unit/storage/storage_test_env.h"
#include "util/gfid.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;
using StorageDataTest = StorageTest;
using StorageFencingTest = StorageTest;
using StorageReadDirTest = StorageTest;

TEST_F(StorageDataTest, BatchedWriteAndRead) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  proto::WriteRequest w;
  w.set_gfid(f.attr().gfid());
  const std::pair<uint64_t, std::string> chunks[] = {
      {0, "hello"}, {10000, "world!"}, {5000, std::string(3000, 'x')}};
  for (const auto& [off, data] : chunks) {
    auto* c = w.add_chunks();
    c->set_offset(off);
    c->set_data(data);
  }
  const auto wr = Call(&Stub::Write, w);
  ASSERT_EQ(wr.err(), 0);
  EXPECT_EQ(wr.file_size(), 10006u);
  // The reply's version is the file's own: a later GetAttr agrees with it.
  const auto attr = GetAttr(f.attr().gfid());
  ASSERT_EQ(attr.err(), 0);
  EXPECT_NE(wr.mtime_ns(), 0);
  EXPECT_EQ(wr.mtime_ns(), attr.attr().mtime_ns());

  const auto r =
      Read(f.attr().gfid(), {{0, 5}, {10000, 6}, {4998, 4}, {9998, 100}, {20000, 10}, {3, 0}});
  ASSERT_EQ(r.err(), 0);
  ASSERT_EQ(r.data_size(), 6);
  EXPECT_EQ(r.data(0), "hello");
  EXPECT_EQ(r.data(1), "world!");
  EXPECT_EQ(r.data(2), std::string("\0\0xx", 4));
  EXPECT_EQ(r.data(3), std::string("\0\0world!", 8));  // short at end of file
  EXPECT_EQ(r.data(4), "");                            // past end of file
  EXPECT_EQ(r.data(5), "");
  EXPECT_EQ(r.file_size(), 10006u);

  const std::string local = ReadLocalFile(export_ + "/f");
  ASSERT_EQ(local.size(), 10006u);
  EXPECT_EQ(local.substr(0, 5), "hello");
  EXPECT_EQ(local.substr(5000, 3000), std::string(3000, 'x'));
  EXPECT_EQ(local.substr(10000), "world!");
}

TEST_F(StorageDataTest, AWriteBackCarriesTheWritersMtimeAndDurabilityInOneCall) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  const int64_t kernels_mtime = 1700000000123456789;
  proto::WriteRequest w;
  w.set_gfid(f.attr().gfid());
  auto* c = w.add_chunks();
  c->set_offset(0);
  c->set_data("data");
  w.set_mtime_ns(kernels_mtime);
  w.set_durable(true);
  const auto wr = Call(&Stub::Write, w);
  ASSERT_EQ(wr.err(), 0);
  EXPECT_EQ(wr.mtime_ns(), kernels_mtime) << "set after the data, which sets it to now";
  EXPECT_TRUE(wr.handoff().empty()) << "no lease, nothing to hand over (tls_test)";
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().mtime_ns(), kernels_mtime);
  EXPECT_EQ(ReadLocalFile(export_ + "/f"), "data");

  // Times alone: no chunks, the data stays as it is.
  proto::WriteRequest times;
  times.set_gfid(f.attr().gfid());
  times.set_mtime_ns(kernels_mtime + 1000);
  const auto tr = Call(&Stub::Write, times);
  ASSERT_EQ(tr.err(), 0);
  EXPECT_EQ(tr.file_size(), 4u);
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().mtime_ns(), kernels_mtime + 1000);
  EXPECT_EQ(ReadLocalFile(export_ + "/f"), "data");
}

TEST_F(StorageDataTest, LargeReadAndWrite) {
  const auto f = Create(root_, "big");
  ASSERT_EQ(f.err(), 0);
  std::string data(8 << 20, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 7 + i / 4096);
  ASSERT_EQ(Write(f.attr().gfid(), 1, data).err(), 0);
  const auto r = Read(f.attr().gfid(), {{1, 8 << 20}});
  ASSERT_EQ(r.err(), 0);
  EXPECT_TRUE(r.data(0) == data);
  // More than 64 MiB in one request is refused.
  EXPECT_EQ(Read(f.attr().gfid(), {{0, 40 << 20}, {0, 40 << 20}}).err(), EINVAL);
}

TEST_F(StorageDataTest, DataCallsNeedARegularFile) {
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  EXPECT_EQ(Read(d.attr().gfid(), {{0, 1}}).err(), EISDIR);
  EXPECT_EQ(Write(d.attr().gfid(), 0, "x").err(), EISDIR);
  proto::FallocateRequest fa;
  fa.set_gfid(d.attr().gfid());
  fa.set_length(10);
  EXPECT_EQ(Call(&Stub::Fallocate, fa).err(), EISDIR);
}

TEST_F(StorageDataTest, Fallocate) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  proto::FallocateRequest req;
  req.set_gfid(f.attr().gfid());
  req.set_offset(0);
  req.set_length(8192);
  ASSERT_EQ(Call(&Stub::Fallocate, req).err(), 0);
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().size(), 8192u);
  EXPECT_GE(GetAttr(f.attr().gfid()).attr().blocks(), 16u);

  req.set_mode(FALLOC_FL_KEEP_SIZE);
  req.set_offset(8192);
  req.set_length(4096);
  ASSERT_EQ(Call(&Stub::Fallocate, req).err(), 0);
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().size(), 8192u);

  ASSERT_EQ(Write(f.attr().gfid(), 0, std::string(8192, 'a')).err(), 0);
  req.set_mode(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  req.set_offset(4096);
  req.set_length(4096);
  ASSERT_EQ(Call(&Stub::Fallocate, req).err(), 0);
  EXPECT_EQ(ReadString(f.attr().gfid(), 4094, 4), std::string("aa\0\0", 4));

  req.set_mode(0);
  req.set_length(0);
  EXPECT_EQ(Call(&Stub::Fallocate, req).err(), EINVAL);
}

TEST_F(StorageFencingTest, OlderTokensAreRejected) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  const uint64_t g = f.attr().gfid();
  EXPECT_EQ(Write(g, 0, "five", 5).err(), 0);
  EXPECT_EQ(Write(g, 0, "three", 3).err(), ESTALE);
  EXPECT_EQ(ReadString(g, 0, 10), "five");
  EXPECT_EQ(Write(g, 0, "zero", 0).err(), ESTALE);  // no lease: not on a leased file
  EXPECT_EQ(Write(g, 0, "six!", 6).err(), 0);
  EXPECT_EQ(Write(g, 0, "5new", 5).err(), ESTALE);
  EXPECT_EQ(ReadString(g, 0, 10), "six!");

  proto::SetAttrRequest sa;
  sa.set_gfid(g);
  sa.set_valid(proto::SETATTR_SIZE | proto::SETATTR_MODE);
  sa.set_size(0);
  sa.set_mode(0600);
  sa.set_fencing_token(4);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), ESTALE);
  EXPECT_EQ(GetAttr(g).attr().size(), 4u);
  EXPECT_EQ(GetAttr(g).attr().mode(), S_IFREG | 0644u);  // nothing of it applied
  proto::FallocateRequest fa;
  fa.set_gfid(g);
  fa.set_length(100);
  fa.set_fencing_token(1);
  EXPECT_EQ(Call(&Stub::Fallocate, fa).err(), ESTALE);
  EXPECT_EQ(GetAttr(g).attr().size(), 4u);

  sa.set_fencing_token(6);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), 0);
  EXPECT_EQ(GetAttr(g).attr().size(), 0u);

  // Tokens are per file.
  const auto other = Create(root_, "other");
  EXPECT_EQ(Write(other.attr().gfid(), 0, "x", 1).err(), 0);

  EXPECT_EQ(server_->stats()->GetCounter("fenced_writes")->Get(), 5u);
}

TEST_F(StorageReadDirTest, PagingCoversEveryEntryOnce) {
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  std::set<std::string> want = {".", ".."};
  for (int i = 0; i < 1000; i++) {
    const std::string name = "file-" + std::to_string(i);
    ASSERT_EQ(Create(d.attr().gfid(), name).err(), 0);
    want.insert(name);
  }
  const auto entries = ListDir(d.attr().gfid(), 7);
  ASSERT_EQ(entries.size(), 1002u);
  const auto names = Names(entries);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);

  // Resuming from a cookie returns the same remainder, also after entries
  // before it were removed and the listing continues in a new server.
  const uint64_t cookie = entries[500].next_offset();
  for (int i = 0; i < 500; i++) {
    if (names[i] != "." && names[i] != "..") {
      ASSERT_EQ(Unlink(d.attr().gfid(), names[i]), 0);
    }
  }
  StopServer();
  StartServer();
  proto::ReadDirRequest req;
  req.set_gfid(d.attr().gfid());
  req.set_offset(cookie);
  req.set_max_entries(7);
  std::vector<std::string> rest;
  for (;;) {
    const auto r = Call(&Stub::ReadDir, req);
    ASSERT_EQ(r.err(), 0);
    for (const auto& e : r.entries()) rest.push_back(e.name());
    if (r.eof()) break;
    req.set_offset(r.entries(r.entries_size() - 1).next_offset());
  }
  EXPECT_EQ(rest, std::vector<std::string>(names.begin() + 501, names.end()));
}

TEST_F(StorageReadDirTest, PlusFillsAttributesExceptForDots) {
  const auto d = Mkdir(root_, "d", 0777);
  ASSERT_EQ(d.err(), 0);
  const auto f = Create(d.attr().gfid(), "f", 0600, true, {5, 6});
  const auto sub = Mkdir(d.attr().gfid(), "sub");
  const auto l = Symlink(d.attr().gfid(), "l", "/etc/passwd");
  ASSERT_EQ(f.err() | sub.err() | l.err(), 0);

  std::map<std::string, proto::DirEntry> by_name;
  for (const auto& e : ListDir(d.attr().gfid(), 2, /*plus=*/true)) by_name[e.name()] = e;
  ASSERT_EQ(by_name.size(), 5u);
  EXPECT_FALSE(by_name["."].has_attr());
  EXPECT_FALSE(by_name[".."].has_attr());
  EXPECT_EQ(by_name["."].gfid(), d.attr().gfid());
  EXPECT_EQ(by_name[".."].gfid(), root_);
  EXPECT_EQ(by_name["."].type(), static_cast<uint32_t>(DT_DIR));

  EXPECT_EQ(by_name["f"].gfid(), f.attr().gfid());
  EXPECT_EQ(by_name["f"].type(), static_cast<uint32_t>(DT_REG));
  ASSERT_TRUE(by_name["f"].has_attr());
  EXPECT_EQ(by_name["f"].attr().mode(), S_IFREG | 0600u);
  EXPECT_EQ(by_name["f"].attr().uid(), 5u);
  EXPECT_EQ(by_name["sub"].attr().gfid(), sub.attr().gfid());
  EXPECT_EQ(by_name["l"].type(), static_cast<uint32_t>(DT_LNK));
  EXPECT_TRUE(S_ISLNK(by_name["l"].attr().mode()));

  // Without plus: same GFIDs, no attributes.
  for (const auto& e : ListDir(d.attr().gfid(), 100)) {
    EXPECT_FALSE(e.has_attr());
    EXPECT_EQ(e.gfid(), by_name[e.name()].gfid()) << e.name();
  }
  // The root's ".." is the root itself, never the directory above the export.
  for (const auto& e : ListDir(root_, 100)) {
    if (e.name() == "..") {
      EXPECT_EQ(e.gfid(), root_);
    }
  }
}

TEST_F(StorageReadDirTest, Errors) {
  const auto f = Create(root_, "f");
  proto::ReadDirRequest req;
  req.set_gfid(f.attr().gfid());
  req.set_max_entries(10);
  EXPECT_EQ(Call(&Stub::ReadDir, req).err(), ENOTDIR);
  req.set_gfid(root_);
  req.set_max_entries(0);
  EXPECT_EQ(Call(&Stub::ReadDir, req).err(), EINVAL);
  req.set_max_entries(10);
  req.set_offset(UINT64_MAX);
  EXPECT_EQ(Call(&Stub::ReadDir, req).err(), EINVAL);
}

}  // namespace
}  // namespace dfuse::storage::testing
