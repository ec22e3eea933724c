// Malformed and hostile requests get an errno; the server keeps serving.
#include <sys/stat.h>

#include <cstdint>
#include <random>

#include "tests/unit/storage/storage_test_env.h"
#include "util/gfid.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;
class StorageHostileTest : public StorageTest {
 protected:
  // Sends every GFID-addressed call to `gfid` and expects `err` from each.
  void ExpectEveryCallFails(uint64_t gfid, int err);
};

void StorageHostileTest::ExpectEveryCallFails(uint64_t gfid, int err) {
  proto::GfidRequest g;
  g.set_gfid(gfid);
  proto::NameRequest n;
  n.set_parent(gfid);
  n.set_name("x");
  proto::MakeRequest m;
  m.set_parent(gfid);
  m.set_name("x");
  m.set_mode(S_IFIFO | 0644);
  m.set_target("t");
  proto::SetAttrRequest sa;
  sa.set_gfid(gfid);
  sa.set_valid(proto::SETATTR_MODE | proto::SETATTR_SIZE);
  proto::LinkRequest l;
  l.set_gfid(gfid);
  l.set_new_parent(gfid);
  l.set_new_name("x");
  proto::RenameRequest rn;
  rn.set_parent(gfid);
  rn.set_name("x");
  rn.set_new_parent(gfid);
  rn.set_new_name("y");
  proto::ReadDirRequest rd;
  rd.set_gfid(gfid);
  rd.set_max_entries(5);
  rd.set_plus(true);
  proto::ReadRequest r;
  r.set_gfid(gfid);
  r.add_extents()->set_length(10);
  proto::WriteRequest w;
  w.set_gfid(gfid);
  w.add_chunks()->set_data("x");
  w.set_fencing_token(9);
  proto::FsyncRequest fs;
  fs.set_gfid(gfid);
  proto::FallocateRequest fa;
  fa.set_gfid(gfid);
  fa.set_length(1);
  proto::XattrRequest x;
  x.set_gfid(gfid);
  x.set_name("user.x");
  x.set_size(10);

  EXPECT_EQ(Call(&Stub::GetAttr, g).err(), err);
  EXPECT_EQ(Call(&Stub::Readlink, g).err(), err);
  EXPECT_EQ(Call(&Stub::StatFs, g).err(), err);
  EXPECT_EQ(Call(&Stub::Lookup, n).err(), err);
  EXPECT_EQ(Call(&Stub::Unlink, n).err(), err);
  EXPECT_EQ(Call(&Stub::Rmdir, n).err(), err);
  EXPECT_EQ(Call(&Stub::Create, m).err(), err);
  EXPECT_EQ(Call(&Stub::Mknod, m).err(), err);
  EXPECT_EQ(Call(&Stub::Mkdir, m).err(), err);
  EXPECT_EQ(Call(&Stub::Symlink, m).err(), err);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), err);
  EXPECT_EQ(Call(&Stub::Link, l).err(), err);
  EXPECT_EQ(Call(&Stub::Rename, rn).err(), err);
  EXPECT_EQ(Call(&Stub::ReadDir, rd).err(), err);
  EXPECT_EQ(Call(&Stub::Read, r).err(), err);
  EXPECT_EQ(Call(&Stub::Write, w).err(), err);
  EXPECT_EQ(Call(&Stub::Fsync, fs).err(), err);
  EXPECT_EQ(Call(&Stub::Fallocate, fa).err(), err);
  EXPECT_EQ(Call(&Stub::SetXattr, x).err(), err);
  EXPECT_EQ(Call(&Stub::GetXattr, x).err(), err);
  EXPECT_EQ(Call(&Stub::ListXattr, x).err(), err);
  EXPECT_EQ(Call(&Stub::RemoveXattr, x).err(), err);
}

TEST_F(StorageHostileTest, UnknownGfidsAreStale) {
  ExpectEveryCallFails(0, ESTALE);
  ExpectEveryCallFails(UINT64_MAX, ESTALE);
  ExpectEveryCallFails(MakeGfid(2, LocalOf(root_)), ESTALE);  // another shard
  ExpectEveryCallFails(MakeGfid(1, 0), ESTALE);
  std::mt19937_64 rng(42);
  for (int i = 0; i < 50; i++) {
    const uint64_t gfid = i % 2 ? rng() : MakeGfid(1, rng() & 0xffffffff);
    proto::GfidRequest g;
    g.set_gfid(gfid);
    EXPECT_EQ(Call(&Stub::GetAttr, g).err(), ESTALE) << gfid;
  }
  EXPECT_EQ(GetAttr(root_).err(), 0);
}

TEST_F(StorageHostileTest, HugeOffsetsAndLengths) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  const uint64_t g = f.attr().gfid();
  ASSERT_EQ(Write(g, 0, "data").err(), 0);

  EXPECT_EQ(Read(g, {{UINT64_MAX - 10, 100}}).err(), EINVAL);
  EXPECT_EQ(Read(g, {{uint64_t{1} << 63, 1}}).err(), EINVAL);
  EXPECT_EQ(Read(g, {{0, UINT64_MAX}}).err(), EINVAL);
  EXPECT_EQ(Read(g, {{0, (64 << 20) + 1}}).err(), EINVAL);
  const auto far = Read(g, {{INT64_MAX - 1, 100}});  // legal, past end of file
  ASSERT_EQ(far.err(), 0);
  EXPECT_EQ(far.data(0), "");

  EXPECT_EQ(Write(g, UINT64_MAX - 1, "x").err(), EINVAL);
  EXPECT_EQ(Write(g, INT64_MAX, "xy").err(), EFBIG);
  EXPECT_EQ(Write(g, uint64_t{1} << 62, "x").err(), EFBIG);  // past ext4's limit
  proto::FallocateRequest fa;
  fa.set_gfid(g);
  fa.set_offset(UINT64_MAX);
  fa.set_length(UINT64_MAX);
  EXPECT_EQ(Call(&Stub::Fallocate, fa).err(), EINVAL);
  fa.set_offset(1);
  fa.set_length(INT64_MAX);
  EXPECT_EQ(Call(&Stub::Fallocate, fa).err(), EFBIG);
  fa.set_offset(0);
  fa.set_mode(0x7fffffff);
  fa.set_length(1);
  EXPECT_NE(Call(&Stub::Fallocate, fa).err(), 0);
  proto::SetAttrRequest sa;
  sa.set_gfid(g);
  sa.set_valid(proto::SETATTR_SIZE);
  sa.set_size(UINT64_MAX);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), EINVAL);
  sa.set_size(INT64_MAX);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), EFBIG);

  EXPECT_EQ(ReadString(g, 0, 100), "data");
  EXPECT_EQ(GetAttr(g).attr().size(), 4u);
}

TEST_F(StorageHostileTest, AbsurdBatches) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  proto::ReadRequest r;
  r.set_gfid(f.attr().gfid());
  for (int i = 0; i < 100000; i++) r.add_extents()->set_length(1);
  EXPECT_EQ(Call(&Stub::Read, r).err(), EINVAL);
  proto::WriteRequest w;
  w.set_gfid(f.attr().gfid());
  for (int i = 0; i < 100000; i++) w.add_chunks()->set_offset(static_cast<uint64_t>(i));
  EXPECT_EQ(Call(&Stub::Write, w).err(), EINVAL);
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().size(), 0u);
}

TEST_F(StorageHostileTest, ZeroLengthEverything) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  proto::ReadRequest r;
  r.set_gfid(f.attr().gfid());
  auto rr = Call(&Stub::Read, r);  // no extents
  EXPECT_EQ(rr.err(), 0);
  EXPECT_EQ(rr.data_size(), 0);
  r.add_extents();
  rr = Call(&Stub::Read, r);  // one empty extent
  EXPECT_EQ(rr.err(), 0);
  ASSERT_EQ(rr.data_size(), 1);
  EXPECT_EQ(rr.data(0), "");
  proto::WriteRequest w;
  w.set_gfid(f.attr().gfid());
  EXPECT_EQ(Call(&Stub::Write, w).err(), 0);
  w.add_chunks()->set_offset(1000);
  const auto wr = Call(&Stub::Write, w);  // an empty chunk does not extend the file
  EXPECT_EQ(wr.err(), 0);
  EXPECT_EQ(wr.file_size(), 0u);

  // Empty requests of every kind.
  EXPECT_EQ(Call(&Stub::Lookup, proto::NameRequest()).err(), ESTALE);
  EXPECT_EQ(Call(&Stub::Create, proto::MakeRequest()).err(), ESTALE);
  EXPECT_EQ(Call(&Stub::Rename, proto::RenameRequest()).err(), ESTALE);
  EXPECT_EQ(Call(&Stub::ReadDir, proto::ReadDirRequest()).err(), ESTALE);
  EXPECT_EQ(Call(&Stub::SetXattr, proto::XattrRequest()).err(), ESTALE);
  proto::NameRequest n;
  n.set_parent(root_);
  EXPECT_EQ(Call(&Stub::Lookup, n).err(), EINVAL);
  proto::SetAttrRequest sa;
  sa.set_gfid(f.attr().gfid());
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), 0);  // nothing to change
  proto::XattrRequest x;
  x.set_gfid(f.attr().gfid());
  EXPECT_EQ(Call(&Stub::GetXattr, x).err(), ERANGE);
  const auto lx = Call(&Stub::ListXattr, x);
  EXPECT_EQ(lx.err(), 0);
  EXPECT_EQ(lx.size(), 0u);
  EXPECT_EQ(GetAttr(root_).err(), 0);
}

}  // namespace
}  // namespace dfuse::storage::testing
