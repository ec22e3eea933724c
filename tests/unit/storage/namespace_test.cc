// Namespace and attribute calls: success paths and the errnos Linux gives.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <chrono>
#include <set>

#include "tests/unit/storage/storage_test_env.h"
#include "util/gfid.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;
using StorageNamespaceTest = StorageTest;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(StorageNamespaceTest, RootIsADirectoryOfShardOne) {
  const auto r = Call(&Stub::GetRoot, proto::RootRequest());
  ASSERT_EQ(r.err(), 0);
  EXPECT_EQ(r.shard_id(), 1u);
  struct stat st;
  ASSERT_EQ(::stat(export_.c_str(), &st), 0);
  EXPECT_EQ(r.attr().gfid(), MakeGfid(1, st.st_ino));
  EXPECT_TRUE(S_ISDIR(r.attr().mode()));
}

TEST_F(StorageNamespaceTest, CreateLookupGetAttr) {
  const auto c = Create(root_, "f", 0640);
  ASSERT_EQ(c.err(), 0);
  struct stat st;
  ASSERT_EQ(::stat((export_ + "/f").c_str(), &st), 0);
  EXPECT_EQ(c.attr().gfid(), MakeGfid(1, st.st_ino));
  EXPECT_EQ(st.st_mode, S_IFREG | 0640u);
  EXPECT_EQ(c.attr().mode(), S_IFREG | 0640u);
  EXPECT_EQ(c.attr().size(), 0u);
  EXPECT_EQ(c.attr().nlink(), 1u);

  const auto l = Lookup(root_, "f");
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.attr().gfid(), c.attr().gfid());
  EXPECT_EQ(l.attr().generation(), c.attr().generation());
  const auto g = GetAttr(c.attr().gfid());
  ASSERT_EQ(g.err(), 0);
  EXPECT_EQ(g.attr().mode(), S_IFREG | 0640u);
  EXPECT_EQ(g.attr().mtime_ns(), st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
}

TEST_F(StorageNamespaceTest, ModeIsExactDespiteServerUmask) {
  const auto c = Create(root_, "f", 0666);
  ASSERT_EQ(c.err(), 0);
  EXPECT_EQ(c.attr().mode(), S_IFREG | 0666u);
  const auto d = Mkdir(root_, "d", 0777);
  ASSERT_EQ(d.err(), 0);
  EXPECT_EQ(d.attr().mode(), S_IFDIR | 0777u);
}

TEST_F(StorageNamespaceTest, CreateErrnos) {
  const auto c = Create(root_, "f");
  ASSERT_EQ(c.err(), 0);
  EXPECT_EQ(Create(root_, "f", 0644, /*exclusive=*/true).err(), EEXIST);
  // Non-exclusive create of an existing regular file returns it.
  const auto again = Create(root_, "f", 0600, /*exclusive=*/false);
  ASSERT_EQ(again.err(), 0);
  EXPECT_EQ(again.attr().gfid(), c.attr().gfid());
  EXPECT_EQ(again.attr().mode(), S_IFREG | 0644u);

  ASSERT_EQ(Mkdir(root_, "d").err(), 0);
  EXPECT_EQ(Create(root_, "d", 0644, /*exclusive=*/false).err(), EISDIR);
  EXPECT_EQ(Create(c.attr().gfid(), "x").err(), ENOTDIR);
  EXPECT_EQ(Lookup(root_, "missing").err(), ENOENT);
  EXPECT_EQ(Lookup(c.attr().gfid(), "x").err(), ENOTDIR);
  EXPECT_EQ(Mkdir(root_, "d").err(), EEXIST);
  EXPECT_EQ(Mkdir(root_, "f").err(), EEXIST);
}

TEST_F(StorageNamespaceTest, OwnerComesFromCredentials) {
  const auto f = Create(root_, "f", 0644, true, {1234, 5678});
  ASSERT_EQ(f.err(), 0);
  EXPECT_EQ(f.attr().uid(), 1234u);
  EXPECT_EQ(f.attr().gid(), 5678u);
  struct stat st;
  ASSERT_EQ(::lstat((export_ + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);

  const auto d = Mkdir(root_, "d", 0755, {42, 43});
  ASSERT_EQ(d.err(), 0);
  EXPECT_EQ(d.attr().uid(), 42u);
  EXPECT_EQ(d.attr().gid(), 43u);

  proto::MakeRequest req;
  req.set_parent(root_);
  req.set_name("l");
  req.set_target("f");
  const auto l = Call(&Stub::Symlink, req, {7, 8});
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.attr().uid(), 7u);
  EXPECT_EQ(l.attr().gid(), 8u);
  ASSERT_EQ(::lstat((export_ + "/l").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 7u);
  // The target keeps its owner: the symlink was not followed.
  ASSERT_EQ(::lstat((export_ + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
}

TEST_F(StorageNamespaceTest, SetgidDirectoryGivesItsGroup) {
  const auto d = Mkdir(root_, "d", 0775, {10, 500});
  ASSERT_EQ(d.err(), 0);
  proto::SetAttrRequest sa;
  sa.set_gfid(d.attr().gfid());
  sa.set_valid(proto::SETATTR_MODE);
  sa.set_mode(02775);
  ASSERT_EQ(Call(&Stub::SetAttr, sa).err(), 0);

  const auto f = Create(d.attr().gfid(), "f", 0644, true, {11, 600, {500}});
  ASSERT_EQ(f.err(), 0);
  EXPECT_EQ(f.attr().uid(), 11u);
  EXPECT_EQ(f.attr().gid(), 500u);
  const auto sub = Mkdir(d.attr().gfid(), "sub", 0755, {11, 600, {500}});
  ASSERT_EQ(sub.err(), 0);
  EXPECT_EQ(sub.attr().gid(), 500u);
  EXPECT_EQ(sub.attr().mode(), S_IFDIR | S_ISGID | 0755u);
}

TEST_F(StorageNamespaceTest, SetAttrModeOwnerSizeTimes) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  ASSERT_EQ(Write(f.attr().gfid(), 0, "0123456789").err(), 0);
  proto::SetAttrRequest req;
  req.set_gfid(f.attr().gfid());
  req.set_valid(proto::SETATTR_MODE | proto::SETATTR_UID | proto::SETATTR_GID |
                proto::SETATTR_SIZE | proto::SETATTR_ATIME | proto::SETATTR_MTIME);
  req.set_mode(04711);
  req.set_uid(100);
  req.set_gid(200);
  req.set_size(3);
  req.set_atime_ns(1000000000LL * 1000 + 5);
  req.set_mtime_ns(-1500000000LL);  // before 1970
  const auto r = Call(&Stub::SetAttr, req);
  ASSERT_EQ(r.err(), 0);
  EXPECT_EQ(r.attr().mode(), S_IFREG | 04711u);
  EXPECT_EQ(r.attr().uid(), 100u);
  EXPECT_EQ(r.attr().gid(), 200u);
  EXPECT_EQ(r.attr().size(), 3u);
  EXPECT_EQ(r.attr().atime_ns(), 1000000000LL * 1000 + 5);
  EXPECT_EQ(r.attr().mtime_ns(), -1500000000LL);
  EXPECT_EQ(ReadString(f.attr().gfid(), 0, 100), "012");

  // Growing, and the *_NOW bits.
  proto::SetAttrRequest now;
  now.set_gfid(f.attr().gfid());
  now.set_valid(proto::SETATTR_SIZE | proto::SETATTR_ATIME_NOW | proto::SETATTR_MTIME_NOW);
  now.set_size(5);
  const int64_t before = NowNs();
  const auto n = Call(&Stub::SetAttr, now);
  ASSERT_EQ(n.err(), 0);
  EXPECT_EQ(n.attr().size(), 5u);
  EXPECT_GE(n.attr().mtime_ns(), before - 20'000'000);  // coarse kernel clock
  EXPECT_LE(n.attr().mtime_ns(), NowNs());
  EXPECT_EQ(n.attr().atime_ns(), n.attr().mtime_ns());
  EXPECT_EQ(ReadString(f.attr().gfid(), 0, 100), std::string("012\0\0", 5));

  // A size on a directory fails like truncate(2).
  proto::SetAttrRequest dir;
  dir.set_gfid(root_);
  dir.set_valid(proto::SETATTR_SIZE);
  EXPECT_EQ(Call(&Stub::SetAttr, dir).err(), EISDIR);
}

TEST_F(StorageNamespaceTest, MknodMakesSpecialFilesWithoutOpeningThem) {
  proto::MakeRequest req;
  req.set_parent(root_);
  req.set_name("fifo");
  req.set_mode(S_IFIFO | 0600);
  const auto fifo = Call(&Stub::Mknod, req);
  ASSERT_EQ(fifo.err(), 0);
  EXPECT_EQ(fifo.attr().mode(), S_IFIFO | 0600u);

  req.set_name("null");
  req.set_mode(S_IFCHR | 0666);
  req.set_rdev(makedev(1, 3));
  const auto chr = Call(&Stub::Mknod, req);
  ASSERT_EQ(chr.err(), 0);
  EXPECT_EQ(chr.attr().mode(), S_IFCHR | 0666u);
  EXPECT_EQ(chr.attr().rdev(), makedev(1, 3));

  req.set_name("sock");
  req.set_mode(S_IFSOCK | 0644);
  req.set_rdev(0);
  ASSERT_EQ(Call(&Stub::Mknod, req).err(), 0);
  req.set_name("reg");
  req.set_mode(0644);
  const auto reg = Call(&Stub::Mknod, req);
  ASSERT_EQ(reg.err(), 0);
  EXPECT_EQ(reg.attr().mode(), S_IFREG | 0644u);
  req.set_name("dir");
  req.set_mode(S_IFDIR | 0755);
  EXPECT_EQ(Call(&Stub::Mknod, req).err(), EPERM);
  req.set_mode(0170000 | 0644);  // no such type
  EXPECT_EQ(Call(&Stub::Mknod, req).err(), EINVAL);

  // Data calls on a FIFO or device are refused: they would block or reach
  // a device outside the export.
  EXPECT_EQ(Read(fifo.attr().gfid(), {{0, 10}}).err(), EINVAL);
  EXPECT_EQ(Read(chr.attr().gfid(), {{0, 10}}).err(), EINVAL);
  EXPECT_EQ(Write(chr.attr().gfid(), 0, "x").err(), EINVAL);
  EXPECT_EQ(Fsync(fifo.attr().gfid()), EINVAL);
  // Non-exclusive create of an existing FIFO returns it, unopened.
  const auto again = Create(root_, "fifo", 0644, /*exclusive=*/false);
  ASSERT_EQ(again.err(), 0);
  EXPECT_EQ(again.attr().gfid(), fifo.attr().gfid());
}

TEST_F(StorageNamespaceTest, SymlinkAndReadlink) {
  const auto l = Symlink(root_, "l", "some/where/../else");
  ASSERT_EQ(l.err(), 0);
  EXPECT_TRUE(S_ISLNK(l.attr().mode()));
  EXPECT_EQ(l.attr().size(), 18u);
  proto::GfidRequest req;
  req.set_gfid(l.attr().gfid());
  const auto r = Call(&Stub::Readlink, req);
  ASSERT_EQ(r.err(), 0);
  EXPECT_EQ(r.target(), "some/where/../else");
  req.set_gfid(root_);
  EXPECT_EQ(Call(&Stub::Readlink, req).err(), EINVAL);
  EXPECT_EQ(Symlink(root_, "l", "x").err(), EEXIST);
  EXPECT_EQ(Symlink(root_, "empty", "").err(), ENOENT);
  EXPECT_EQ(Symlink(root_, "nul", std::string("a\0b", 3)).err(), EINVAL);
  EXPECT_EQ(Symlink(root_, "long", std::string(4096, 'a')).err(), ENAMETOOLONG);
}

TEST_F(StorageNamespaceTest, HardLinksShareAGfid) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  proto::LinkRequest req;
  req.set_gfid(f.attr().gfid());
  req.set_new_parent(d.attr().gfid());
  req.set_new_name("g");
  const auto l = Call(&Stub::Link, req);
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.attr().gfid(), f.attr().gfid());
  EXPECT_EQ(l.attr().nlink(), 2u);
  EXPECT_EQ(Lookup(d.attr().gfid(), "g").attr().gfid(), f.attr().gfid());
  ASSERT_EQ(Write(f.attr().gfid(), 0, "shared").err(), 0);
  EXPECT_EQ(ReadLocalFile(export_ + "/d/g"), "shared");

  EXPECT_EQ(Call(&Stub::Link, req).err(), EEXIST);
  req.set_gfid(d.attr().gfid());
  req.set_new_name("dirlink");
  EXPECT_EQ(Call(&Stub::Link, req).err(), EPERM);
  ASSERT_EQ(Unlink(root_, "f"), 0);
  EXPECT_EQ(GetAttr(f.attr().gfid()).attr().nlink(), 1u);
}

TEST_F(StorageNamespaceTest, UnlinkAndRmdir) {
  ASSERT_EQ(Create(root_, "f").err(), 0);
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  ASSERT_EQ(Create(d.attr().gfid(), "inner").err(), 0);

  EXPECT_EQ(Unlink(root_, "d"), EISDIR);
  EXPECT_EQ(Rmdir(root_, "f"), ENOTDIR);
  EXPECT_EQ(Rmdir(root_, "d"), ENOTEMPTY);
  EXPECT_EQ(Unlink(root_, "missing"), ENOENT);
  EXPECT_EQ(Rmdir(root_, "missing"), ENOENT);
  EXPECT_EQ(Unlink(d.attr().gfid(), "inner"), 0);
  EXPECT_EQ(Rmdir(root_, "d"), 0);
  EXPECT_EQ(Unlink(root_, "f"), 0);
  EXPECT_EQ(LocalNames(export_), std::vector<std::string>{});
  // Nothing can be created in the removed directory, though its GFID may
  // still be cached.
  EXPECT_EQ(Create(d.attr().gfid(), "x").err(), ENOENT);
}

TEST_F(StorageNamespaceTest, RenamePlainNoreplaceExchange) {
  const auto a = Create(root_, "a");
  const auto b = Create(root_, "b");
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(a.err() | b.err() | d.err(), 0);

  EXPECT_EQ(Rename(root_, "a", root_, "b", RENAME_NOREPLACE), EEXIST);
  EXPECT_EQ(Rename(root_, "a", root_, "b", RENAME_EXCHANGE), 0);
  EXPECT_EQ(Lookup(root_, "a").attr().gfid(), b.attr().gfid());
  EXPECT_EQ(Lookup(root_, "b").attr().gfid(), a.attr().gfid());
  EXPECT_EQ(Rename(root_, "a", root_, "zz", RENAME_EXCHANGE), ENOENT);
  EXPECT_EQ(Rename(root_, "a", root_, "b", RENAME_NOREPLACE | RENAME_EXCHANGE), EINVAL);
  EXPECT_EQ(Rename(root_, "a", root_, "b", RENAME_WHITEOUT), EINVAL);
  EXPECT_EQ(Rename(root_, "a", root_, "b", 0x100), EINVAL);

  EXPECT_EQ(Rename(root_, "a", d.attr().gfid(), "moved", RENAME_NOREPLACE), 0);
  EXPECT_EQ(Lookup(d.attr().gfid(), "moved").attr().gfid(), b.attr().gfid());
  EXPECT_EQ(Lookup(root_, "a").err(), ENOENT);
  // Plain rename replaces.
  EXPECT_EQ(Rename(d.attr().gfid(), "moved", root_, "b"), 0);
  EXPECT_EQ(Lookup(root_, "b").attr().gfid(), b.attr().gfid());

  ASSERT_EQ(Create(d.attr().gfid(), "x").err(), 0);
  ASSERT_EQ(Mkdir(root_, "e").err(), 0);
  EXPECT_EQ(Rename(root_, "e", root_, "d"), ENOTEMPTY);
  EXPECT_EQ(Rename(root_, "b", root_, "d"), EISDIR);
  EXPECT_EQ(Rename(root_, "d", root_, "b"), ENOTDIR);
  EXPECT_EQ(Rename(root_, "d", d.attr().gfid(), "sub"), EINVAL);  // into itself
  EXPECT_EQ(Rename(root_, "missing", root_, "y"), ENOENT);
}

// Clients revoke other nodes' cached attributes of a file whose link count
// they changed: the reply names it, and only when one lost a name.
TEST_F(StorageNamespaceTest, UnlinkAndRenameNameTheFileThatLostAName) {
  const auto a = Create(root_, "a");
  const auto b = Create(root_, "b");
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(a.err() | b.err() | d.err(), 0);
  auto unlink = [&](uint64_t parent, const std::string& name) {
    proto::NameRequest req;
    req.set_parent(parent);
    req.set_name(name);
    return Call(&Stub::Unlink, req);
  };
  auto rename = [&](const std::string& from, const std::string& to, uint32_t flags) {
    proto::RenameRequest req;
    req.set_parent(root_);
    req.set_name(from);
    req.set_new_parent(root_);
    req.set_new_name(to);
    req.set_flags(flags);
    return Call(&Stub::Rename, req);
  };

  auto r = rename("a", "b", RENAME_EXCHANGE);  // both keep their one name
  EXPECT_EQ(r.err(), 0);
  EXPECT_FALSE(r.has_unlinked());
  r = rename("a", "c", 0);  // nothing under the new name
  EXPECT_EQ(r.err(), 0);
  EXPECT_FALSE(r.has_unlinked());
  r = rename("c", "b", RENAME_NOREPLACE);
  EXPECT_EQ(r.err(), EEXIST);
  EXPECT_FALSE(r.has_unlinked());
  r = rename("c", "b", 0);  // "c" is b's file, "b" a's since the exchange
  EXPECT_EQ(r.err(), 0);
  EXPECT_EQ(r.unlinked().gfid(), a.attr().gfid());
  EXPECT_EQ(r.unlinked().nlink(), 1u);  // as it was before
  EXPECT_TRUE(S_ISREG(r.unlinked().mode()));

  proto::LinkRequest link;
  link.set_gfid(b.attr().gfid());
  link.set_new_parent(root_);
  link.set_new_name("b2");
  ASSERT_EQ(Call(&Stub::Link, link).err(), 0);
  r = rename("b", "b2", 0);  // two names of one file: POSIX does nothing
  EXPECT_EQ(r.err(), 0);
  EXPECT_FALSE(r.has_unlinked());

  auto u = unlink(root_, "b2");
  EXPECT_EQ(u.err(), 0);
  EXPECT_EQ(u.unlinked().gfid(), b.attr().gfid());
  EXPECT_EQ(u.unlinked().nlink(), 2u);
  u = unlink(root_, "b2");
  EXPECT_EQ(u.err(), ENOENT);
  EXPECT_FALSE(u.has_unlinked());
  u = unlink(root_, "d");
  EXPECT_EQ(u.err(), EISDIR);
  EXPECT_FALSE(u.has_unlinked());
}

TEST_F(StorageNamespaceTest, StatFs) {
  proto::GfidRequest req;
  req.set_gfid(root_);
  const auto r = Call(&Stub::StatFs, req);
  ASSERT_EQ(r.err(), 0);
  struct statvfs sv;
  ASSERT_EQ(::statvfs(export_.c_str(), &sv), 0);
  EXPECT_EQ(r.bsize(), sv.f_bsize);
  EXPECT_EQ(r.blocks(), sv.f_blocks);
  EXPECT_EQ(r.files(), sv.f_files);
  EXPECT_EQ(r.namemax(), 255u);
}

TEST_F(StorageNamespaceTest, Xattrs) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  proto::XattrRequest req;
  req.set_gfid(f.attr().gfid());
  req.set_name("user.k");
  req.set_value("value");
  ASSERT_EQ(Call(&Stub::SetXattr, req).err(), 0);
  req.set_flags(XATTR_CREATE);
  EXPECT_EQ(Call(&Stub::SetXattr, req).err(), EEXIST);
  char buf[16];
  ASSERT_EQ(::getxattr((export_ + "/f").c_str(), "user.k", buf, sizeof(buf)), 5);

  proto::XattrRequest get;
  get.set_gfid(f.attr().gfid());
  get.set_name("user.k");
  auto g = Call(&Stub::GetXattr, get);  // size 0: size only
  ASSERT_EQ(g.err(), 0);
  EXPECT_EQ(g.size(), 5u);
  EXPECT_EQ(g.value(), "");
  get.set_size(4);
  EXPECT_EQ(Call(&Stub::GetXattr, get).err(), ERANGE);
  get.set_size(100);
  g = Call(&Stub::GetXattr, get);
  ASSERT_EQ(g.err(), 0);
  EXPECT_EQ(g.value(), "value");
  EXPECT_EQ(g.size(), 5u);

  proto::XattrRequest list;
  list.set_gfid(f.attr().gfid());
  auto l = Call(&Stub::ListXattr, list);
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.size(), 7u);
  list.set_size(6);
  EXPECT_EQ(Call(&Stub::ListXattr, list).err(), ERANGE);
  list.set_size(7);
  l = Call(&Stub::ListXattr, list);
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.value(), std::string("user.k\0", 7));

  proto::XattrRequest rm;
  rm.set_gfid(f.attr().gfid());
  rm.set_name("user.k");
  EXPECT_EQ(Call(&Stub::RemoveXattr, rm).err(), 0);
  EXPECT_EQ(Call(&Stub::RemoveXattr, rm).err(), ENODATA);
  EXPECT_EQ(Call(&Stub::GetXattr, get).err(), ENODATA);
  req.set_flags(XATTR_REPLACE);
  EXPECT_EQ(Call(&Stub::SetXattr, req).err(), ENODATA);
  req.set_flags(0x40);
  EXPECT_EQ(Call(&Stub::SetXattr, req).err(), EINVAL);
  req.set_flags(0);
  req.set_name("");
  EXPECT_EQ(Call(&Stub::SetXattr, req).err(), ERANGE);
  req.set_name(std::string(256, 'u'));
  EXPECT_EQ(Call(&Stub::SetXattr, req).err(), ERANGE);

  // Directories have xattrs too.
  proto::XattrRequest dir;
  dir.set_gfid(root_);
  dir.set_name("user.d");
  dir.set_value("1");
  EXPECT_EQ(Call(&Stub::SetXattr, dir).err(), 0);
}

TEST_F(StorageNamespaceTest, FsyncFilesAndDirectories) {
  const auto f = Create(root_, "f");
  ASSERT_EQ(f.err(), 0);
  ASSERT_EQ(Write(f.attr().gfid(), 0, "durable").err(), 0);
  EXPECT_EQ(Fsync(f.attr().gfid()), 0);
  EXPECT_EQ(Fsync(f.attr().gfid(), /*datasync=*/true), 0);
  EXPECT_EQ(Fsync(root_), 0);
  const auto l = Symlink(root_, "l", "f");
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(Fsync(l.attr().gfid()), EINVAL);
  EXPECT_EQ(Fsync(MakeGfid(1, 0xdeadbeef)), ESTALE);
}

}  // namespace
}  // namespace dfuse::storage::testing
