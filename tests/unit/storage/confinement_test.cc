// Nothing outside the export is reachable: names are single components and
// symlinks are never followed on a client's behalf.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "storage/names.h"
#include "tests/unit/storage/storage_test_env.h"
#include "util/gfid.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;
using StorageConfinementTest = StorageTest;

TEST(StorageNamesTest, ValidateName) {
  EXPECT_EQ(ValidateName("a"), 0);
  EXPECT_EQ(ValidateName("..."), 0);
  EXPECT_EQ(ValidateName(".hidden"), 0);
  EXPECT_EQ(ValidateName(std::string(255, 'n')), 0);
  EXPECT_EQ(ValidateName("\xff\xfe"), 0);  // names need not be UTF-8
  EXPECT_EQ(ValidateName(std::string(256, 'n')), ENAMETOOLONG);
  EXPECT_EQ(ValidateName(""), EINVAL);
  EXPECT_EQ(ValidateName("."), EINVAL);
  EXPECT_EQ(ValidateName(".."), EINVAL);
  EXPECT_EQ(ValidateName("a/b"), EINVAL);
  EXPECT_EQ(ValidateName("/"), EINVAL);
  EXPECT_EQ(ValidateName(std::string("a\0b", 3)), EINVAL);
}

TEST_F(StorageConfinementTest, BadNamesAreRefusedByEveryCall) {
  const std::pair<std::string, int> bad[] = {{"a/b", EINVAL},
                                             {"..", EINVAL},
                                             {".", EINVAL},
                                             {"", EINVAL},
                                             {"../escape", EINVAL},
                                             {std::string(256, 'x'), ENAMETOOLONG},
                                             {std::string("x\0y", 3), EINVAL},
                                             {"/etc/passwd", EINVAL}};
  ASSERT_EQ(Create(root_, "f").err(), 0);
  const auto d = Mkdir(root_, "d");
  ASSERT_EQ(d.err(), 0);
  for (const auto& [name, err] : bad) {
    SCOPED_TRACE(name);
    EXPECT_EQ(Lookup(d.attr().gfid(), name).err(), err);
    EXPECT_EQ(Create(d.attr().gfid(), name).err(), err);
    EXPECT_EQ(Mkdir(d.attr().gfid(), name).err(), err);
    EXPECT_EQ(Symlink(d.attr().gfid(), name, "t").err(), err);
    EXPECT_EQ(Unlink(d.attr().gfid(), name), err);
    EXPECT_EQ(Rmdir(d.attr().gfid(), name), err);
    EXPECT_EQ(Rename(root_, "f", d.attr().gfid(), name), err);
    EXPECT_EQ(Rename(d.attr().gfid(), name, root_, "g"), err);
    proto::LinkRequest link;
    link.set_gfid(Lookup(root_, "f").attr().gfid());
    link.set_new_parent(d.attr().gfid());
    link.set_new_name(name);
    EXPECT_EQ(Call(&Stub::Link, link).err(), err);
    proto::MakeRequest mknod;
    mknod.set_parent(d.attr().gfid());
    mknod.set_name(name);
    mknod.set_mode(S_IFIFO | 0644);
    EXPECT_EQ(Call(&Stub::Mknod, mknod).err(), err);
  }
  // Nothing was created or removed anywhere.
  EXPECT_EQ(LocalNames(base_), (std::vector<std::string>{"export", "state"}));
  EXPECT_EQ(LocalNames(export_), (std::vector<std::string>{"d", "f"}));
  EXPECT_EQ(LocalNames(export_ + "/d"), std::vector<std::string>{});
}

// A symlink to a file outside the export is served as a symlink; no call on
// it reaches the target.
TEST_F(StorageConfinementTest, SymlinkToOutsideIsNeverFollowed) {
  const std::string outside = base_ + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  const std::string secret = outside + "/secret";
  {
    const int fd = ::open(secret.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "secret", 6), 6);
    ::close(fd);
  }
  struct stat before;
  ASSERT_EQ(::stat(secret.c_str(), &before), 0);

  // Created locally as an admin or earlier client might have left them.
  ASSERT_EQ(::symlink(secret.c_str(), (export_ + "/abs").c_str()), 0);
  ASSERT_EQ(::symlink("../outside/secret", (export_ + "/rel").c_str()), 0);
  ASSERT_EQ(::symlink("../outside", (export_ + "/dirlink").c_str()), 0);
  ASSERT_EQ(Symlink(root_, "etc", "/etc/passwd").err(), 0);
  ASSERT_EQ(Symlink(root_, "up", "../../x").err(), 0);

  for (const char* name : {"abs", "rel", "etc", "up"}) {
    SCOPED_TRACE(name);
    const auto l = Lookup(root_, name);
    ASSERT_EQ(l.err(), 0);
    EXPECT_TRUE(S_ISLNK(l.attr().mode()));
    const uint64_t g = l.attr().gfid();
    EXPECT_EQ(Read(g, {{0, 100}}).err(), ELOOP);
    EXPECT_EQ(Write(g, 0, "pwned").err(), ELOOP);
    proto::SetAttrRequest trunc;
    trunc.set_gfid(g);
    trunc.set_valid(proto::SETATTR_SIZE);
    EXPECT_EQ(Call(&Stub::SetAttr, trunc).err(), ELOOP);
    proto::SetAttrRequest chmod;
    chmod.set_gfid(g);
    chmod.set_valid(proto::SETATTR_MODE);
    chmod.set_mode(0777);
    EXPECT_EQ(Call(&Stub::SetAttr, chmod).err(), EOPNOTSUPP);
    proto::FallocateRequest fa;
    fa.set_gfid(g);
    fa.set_length(4096);
    EXPECT_EQ(Call(&Stub::Fallocate, fa).err(), ELOOP);
    // Owner and times change on the link itself.
    proto::SetAttrRequest own;
    own.set_gfid(g);
    own.set_valid(proto::SETATTR_UID | proto::SETATTR_MTIME);
    own.set_uid(4242);
    own.set_mtime_ns(12345);
    const auto o = Call(&Stub::SetAttr, own);
    ASSERT_EQ(o.err(), 0);
    EXPECT_TRUE(S_ISLNK(o.attr().mode()));
    EXPECT_EQ(o.attr().uid(), 4242u);
    // xattrs too: user.* on a symlink is refused by Linux itself.
    proto::XattrRequest x;
    x.set_gfid(g);
    x.set_name("user.k");
    x.set_value("v");
    EXPECT_EQ(Call(&Stub::SetXattr, x).err(), EPERM);
    EXPECT_EQ(Call(&Stub::GetXattr, x).err(), ENODATA);
    // Creating "through" the link fails: it is not a directory.
    EXPECT_EQ(Create(g, "x").err(), ENOTDIR);
  }
  const auto dl = Lookup(root_, "dirlink");
  ASSERT_EQ(dl.err(), 0);
  EXPECT_TRUE(S_ISLNK(dl.attr().mode()));
  EXPECT_EQ(Create(dl.attr().gfid(), "planted").err(), ENOTDIR);
  EXPECT_EQ(Mkdir(dl.attr().gfid(), "planted").err(), ENOTDIR);
  EXPECT_EQ(Lookup(dl.attr().gfid(), "secret").err(), ENOTDIR);
  proto::ReadDirRequest rd;
  rd.set_gfid(dl.attr().gfid());
  rd.set_max_entries(10);
  EXPECT_EQ(Call(&Stub::ReadDir, rd).err(), ENOTDIR);
  proto::LinkRequest link;
  link.set_gfid(Lookup(root_, "abs").attr().gfid());
  link.set_new_parent(dl.attr().gfid());
  link.set_new_name("planted");
  EXPECT_EQ(Call(&Stub::Link, link).err(), ENOTDIR);
  EXPECT_EQ(Rename(root_, "abs", dl.attr().gfid(), "planted"), ENOTDIR);

  // The outside world is untouched.
  struct stat after;
  ASSERT_EQ(::stat(secret.c_str(), &after), 0);
  EXPECT_EQ(ReadLocalFile(secret), "secret");
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  char buf[8];
  EXPECT_LT(::getxattr(secret.c_str(), "user.k", buf, sizeof(buf)), 0);
  EXPECT_EQ(LocalNames(outside), std::vector<std::string>{"secret"});
  EXPECT_EQ(LocalNames(base_), (std::vector<std::string>{"export", "outside", "state"}));
}

// GFIDs are only handed out for files reached from the export root: a file
// outside, even on the same file system, cannot be named.
TEST_F(StorageConfinementTest, OutsideFilesHaveNoGfid) {
  const std::string outside = base_ + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  struct stat st;
  ASSERT_EQ(::stat(outside.c_str(), &st), 0);
  const uint64_t guessed = MakeGfid(1, st.st_ino);
  EXPECT_EQ(GetAttr(guessed).err(), ESTALE);
  EXPECT_EQ(Create(guessed, "x").err(), ESTALE);
  proto::ReadDirRequest rd;
  rd.set_gfid(guessed);
  rd.set_max_entries(10);
  EXPECT_EQ(Call(&Stub::ReadDir, rd).err(), ESTALE);
  // Nor is the export's parent.
  ASSERT_EQ(::stat(base_.c_str(), &st), 0);
  EXPECT_EQ(GetAttr(MakeGfid(1, st.st_ino)).err(), ESTALE);
  EXPECT_EQ(LocalNames(outside), std::vector<std::string>{});
}

}  // namespace
}  // namespace dfuse::storage::testing
