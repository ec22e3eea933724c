// The storage service acts for the user each call names, mapped by the
// client's export rule: root squash, all squash, allowed ids; and checks
// each call's permissions as that user, whatever the client's kernel did.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "storage/access.h"
#include "storage/permission.h"
#include "tests/unit/storage/storage_test_env.h"
#include "util/caller.h"
#include "util/handle_keys.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;

const Caller kRoot{0, 0};
const Caller kAlice{1000, 1000};
const Caller kBob{2000, 2000};
constexpr uint32_t kNobody = 65534;

AccessRules Rules(const std::string& default_rule) {
  AccessRules rules;
  std::string error;
  EXPECT_TRUE(AccessRules::Parse({}, default_rule, &rules, &error)) << error;
  return rules;
}

class PermissionTest : public StorageTest {
 protected:
  // Makes `name` in the export root directly (as the test's own root),
  // with `mode` and owner, holding `data`; returns its GFID.
  uint64_t LocalFile(const std::string& name, mode_t mode, uid_t uid, gid_t gid,
                     const std::string& data = "secret") {
    const std::string path = export_ + "/" + name;
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, mode);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    EXPECT_EQ(::fchown(fd, uid, gid), 0);
    EXPECT_EQ(::fchmod(fd, mode), 0);
    ::close(fd);
    return Lookup(root_, name).attr().gfid();
  }

  proto::ReadReply ReadAs(uint64_t gfid, const Caller& as) {
    proto::ReadRequest req;
    req.set_gfid(gfid);
    auto* e = req.add_extents();
    e->set_offset(0);
    e->set_length(100);
    return Call(&Stub::Read, req, as);
  }

  int WriteAs(uint64_t gfid, const Caller& as) {
    proto::WriteRequest req;
    req.set_gfid(gfid);
    auto* c = req.add_chunks();
    c->set_offset(0);
    c->set_data("x");
    return Call(&Stub::Write, req, as).err();
  }

  int AccessAs(uint64_t gfid, uint32_t mask, const Caller& as) {
    proto::AccessRequest req;
    req.set_gfid(gfid);
    req.set_mask(mask);
    return Call(&Stub::Access, req, as).err();
  }

  int SetAttrAs(uint64_t gfid, uint32_t valid, const Caller& as, uint32_t mode = 0,
                uint32_t uid = 0, uint32_t gid = 0) {
    proto::SetAttrRequest req;
    req.set_gfid(gfid);
    req.set_valid(valid);
    req.set_mode(mode);
    req.set_uid(uid);
    req.set_gid(gid);
    return Call(&Stub::SetAttr, req, as).err();
  }

  void Restart(const std::string& default_rule) {
    StopServer();
    access_ = Rules(default_rule);
    StartServer();
  }
};

TEST_F(PermissionTest, SquashedRootCannotMakeRootFilesOrReadRootsPrivateOnes) {
  Restart("rw,root_squash");
  const uint64_t secret = LocalFile("secret", 0600, 0, 0);

  // New files belong to the anonymous user, not to root.
  const auto f = Create(root_, "mine", 0644, true, kRoot);
  ASSERT_EQ(f.err(), 0);
  EXPECT_EQ(f.attr().uid(), kNobody);
  EXPECT_EQ(f.attr().gid(), kNobody);
  struct stat st;
  ASSERT_EQ(::stat((export_ + "/mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);

  // Root's 0600 file: no reading, writing, opening, chmod or chown.
  EXPECT_EQ(ReadAs(secret, kRoot).err(), EACCES);
  EXPECT_EQ(WriteAs(secret, kRoot), EACCES);
  EXPECT_EQ(AccessAs(secret, R_OK, kRoot), EACCES);
  EXPECT_EQ(SetAttrAs(secret, proto::SETATTR_MODE, kRoot, 0644), EPERM);
  EXPECT_EQ(SetAttrAs(secret, proto::SETATTR_UID, kRoot, 0, kNobody), EPERM);
  EXPECT_EQ(ReadLocalFile(export_ + "/secret"), "secret");
  // Giving a file away to root is refused as well.
  EXPECT_EQ(SetAttrAs(f.attr().gfid(), proto::SETATTR_UID, kRoot, 0, 0), EPERM);
  // Metadata stays visible, as on NFS.
  EXPECT_EQ(GetAttr(secret).err(), 0);

  // The same export without squashing: root reads it.
  Restart("rw,no_root_squash");
  EXPECT_EQ(ReadAs(secret, kRoot).data(0), "secret");
  EXPECT_EQ(AccessAs(secret, R_OK | W_OK, kRoot), 0);
}

TEST_F(PermissionTest, AllSquashMapsEveryUser) {
  Restart("rw,all_squash,anonuid=3000,anongid=3001");
  const auto f = Create(root_, "f", 0600, true, kAlice);
  ASSERT_EQ(f.err(), 0);
  EXPECT_EQ(f.attr().uid(), 3000u);
  EXPECT_EQ(f.attr().gid(), 3001u);
}

TEST_F(PermissionTest, ClientsActOnlyAsTheIdsTheirRuleAllows) {
  const uint64_t f = LocalFile("f", 0666, 1000, 1000);
  Restart("rw,no_root_squash,uids=1000-1999,gids=1000-1999");
  EXPECT_EQ(ReadAs(f, kAlice).err(), 0);
  EXPECT_EQ(ReadAs(f, kBob).err(), EPERM);
  EXPECT_EQ(ReadAs(f, kRoot).err(), EPERM);               // root is outside the range too
  EXPECT_EQ(ReadAs(f, Caller{1500, 2500}).err(), EPERM);  // the group is checked
  // Root squashed to the anonymous user, who is always allowed.
  Restart("rw,root_squash,uids=1000-1999");
  EXPECT_EQ(ReadAs(f, kRoot).err(), 0);
  EXPECT_EQ(Create(root_, "g", 0644, true, kRoot).attr().uid(), kNobody);
}

TEST_F(PermissionTest, OrdinaryUsersGetLinuxPermissions) {
  const uint64_t bobs = LocalFile("bobs", 0600, kBob.uid, kBob.gid);
  EXPECT_EQ(ReadAs(bobs, kAlice).err(), EACCES);
  EXPECT_EQ(WriteAs(bobs, kAlice), EACCES);
  EXPECT_EQ(ReadAs(bobs, kBob).err(), 0);
  // Group permission through a supplementary group.
  const uint64_t shared = LocalFile("shared", 0660, kBob.uid, 5000);
  EXPECT_EQ(WriteAs(shared, kAlice), EACCES);
  EXPECT_EQ(WriteAs(shared, Caller{1000, 1000, {5000}}), 0);
  // No chown, no chmod of someone else's file, no explicit times.
  EXPECT_EQ(SetAttrAs(bobs, proto::SETATTR_UID, kAlice, 0, kAlice.uid), EPERM);
  EXPECT_EQ(SetAttrAs(bobs, proto::SETATTR_MODE, kAlice, 0666), EPERM);
  EXPECT_EQ(SetAttrAs(bobs, proto::SETATTR_MTIME, kAlice), EACCES);
  // chmod g+s of one's own file outside its group drops S_ISGID.
  const uint64_t alices = LocalFile("alices", 0644, kAlice.uid, 5000);
  ASSERT_EQ(SetAttrAs(alices, proto::SETATTR_MODE, kAlice, 02755), 0);
  EXPECT_EQ(GetAttr(alices).attr().mode() & 07777, 0755u);
  // Device nodes need privilege.
  proto::MakeRequest mk;
  mk.set_parent(root_);
  mk.set_name("null");
  mk.set_mode(S_IFCHR | 0666);
  mk.set_rdev(makedev(1, 3));
  EXPECT_EQ(Call(&Stub::Mknod, mk, kAlice).err(), EPERM);
}

// A write, truncate or fallocate by an unprivileged user takes the set-ID
// bits and file capabilities away at the storage service itself, as the
// kernel does for a local writer, whatever the client's kernel asked.
TEST_F(PermissionTest, UnprivilegedChangesOfDataDropSetIdBitsAndCapabilities) {
  auto mode_of = [&](const std::string& name) {
    struct stat st;
    EXPECT_EQ(::stat((export_ + "/" + name).c_str(), &st), 0);
    return st.st_mode & 07777;
  };
  const uint64_t suid = LocalFile("suid", 06777, 0, 0);  // sgid with group exec
  ASSERT_EQ(WriteAs(suid, kAlice), 0);
  EXPECT_EQ(mode_of("suid"), 0777u);
  // S_ISGID without group exec marks mandatory locking: it stays.
  const uint64_t lock = LocalFile("lock", 06767, 0, 0);
  ASSERT_EQ(WriteAs(lock, kAlice), 0);
  EXPECT_EQ(mode_of("lock"), 02767u);
  // The privileged keep them.
  const uint64_t roots = LocalFile("roots", 04777, 0, 0);
  ASSERT_EQ(WriteAs(roots, kRoot), 0);
  EXPECT_EQ(mode_of("roots"), 04777u);
  // Truncate and fallocate too.
  const uint64_t trunc = LocalFile("trunc", 04777, 0, 0);
  proto::SetAttrRequest size;
  size.set_gfid(trunc);
  size.set_valid(proto::SETATTR_SIZE);
  size.set_size(1);
  ASSERT_EQ(Call(&Stub::SetAttr, size, kAlice).err(), 0);
  EXPECT_EQ(mode_of("trunc"), 0777u);
  const uint64_t falloc = LocalFile("falloc", 04777, 0, 0);
  proto::FallocateRequest fa;
  fa.set_gfid(falloc);
  fa.set_length(4096);
  ASSERT_EQ(Call(&Stub::Fallocate, fa, kAlice).err(), 0);
  EXPECT_EQ(mode_of("falloc"), 0777u);

  // File capabilities go as well (where the export's file system keeps them).
  const uint64_t caps = LocalFile("caps", 0777, 0, 0);
  const std::string path = export_ + "/caps";
  // A version 2 capability set with CAP_NET_RAW permitted and effective.
  const unsigned char cap[20] = {0x01, 0, 0, 0x02, 0, 0x20, 0, 0};
  if (::setxattr(path.c_str(), "security.capability", cap, sizeof(cap), 0) == 0) {
    ASSERT_EQ(WriteAs(caps, kAlice), 0);
    EXPECT_LT(::getxattr(path.c_str(), "security.capability", nullptr, 0), 0);
    EXPECT_EQ(errno, ENODATA);
  }

  // The kernel clears the bits of a file its user writes with a chmod, as that
  // user: allowed to whoever may write, for the set-ID bits a write clears only.
  const uint64_t other = LocalFile("other", 06777, kBob.uid, kBob.gid);
  EXPECT_EQ(SetAttrAs(other, proto::SETATTR_MODE, kAlice, 02777), 0);
  EXPECT_EQ(mode_of("other"), 02777u);
  EXPECT_EQ(SetAttrAs(other, proto::SETATTR_MODE, kAlice, 0666), EPERM);  // more than set-ID
  EXPECT_EQ(SetAttrAs(other, proto::SETATTR_MODE, kAlice, 02777), EPERM);  // no change
  const uint64_t readonly = LocalFile("readonly", 04755, kBob.uid, kBob.gid);
  EXPECT_EQ(SetAttrAs(readonly, proto::SETATTR_MODE, kAlice, 0755), EPERM);  // may not write
  EXPECT_EQ(mode_of("readonly"), 04755u);
}

// A write-back's own call for the writer's kernel mtime and durability (no
// data) needs no more right than fsync(2), clears no set-ID bit, and sets a
// time only for the file's owner, as utimensat(2) would.
TEST_F(PermissionTest, AWriteWithoutDataChangesNoModeAndSetsTimesOnlyForTheOwner) {
  auto mtime_of = [&](const std::string& name) {
    struct stat st;
    EXPECT_EQ(::stat((export_ + "/" + name).c_str(), &st), 0);
    return std::pair<int64_t, mode_t>{st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
                                      st.st_mode & 07777};
  };
  auto times_only = [&](uint64_t gfid, int64_t mtime_ns, const Caller& as) {
    proto::WriteRequest req;
    req.set_gfid(gfid);
    req.set_mtime_ns(mtime_ns);
    req.set_durable(true);
    return Call(&Stub::Write, req, as).err();
  };
  const int64_t kTime = 1600000000000000000;
  // Alice's own set-ID file: her time is set, the bits stay.
  const uint64_t own = LocalFile("own", 04755, kAlice.uid, kAlice.gid);
  ASSERT_EQ(times_only(own, kTime, kAlice), 0);
  EXPECT_EQ(mtime_of("own"), std::make_pair(kTime, mode_t{04755}));
  // Bob's file that Alice may no longer write: nothing is refused (the data
  // went earlier), and nothing changes.
  const uint64_t bobs = LocalFile("bobs", 0644, kBob.uid, kBob.gid);
  const auto before = mtime_of("bobs");
  ASSERT_EQ(times_only(bobs, kTime, kAlice), 0);
  EXPECT_EQ(mtime_of("bobs"), before);
  // With data, a writer who does not own the file keeps its write's time.
  const uint64_t shared = LocalFile("shared", 0666, kBob.uid, kBob.gid);
  proto::WriteRequest w;
  w.set_gfid(shared);
  auto* c = w.add_chunks();
  c->set_offset(0);
  c->set_data("alice");
  w.set_mtime_ns(kTime);
  ASSERT_EQ(Call(&Stub::Write, w, kAlice).err(), 0);
  EXPECT_GT(mtime_of("shared").first, kTime);
}

TEST_F(PermissionTest, DirectoriesAreSearchedWrittenAndStickyAsOnLinux) {
  const auto priv = Mkdir(root_, "private", 0700, kBob);
  ASSERT_EQ(priv.err(), 0);
  ASSERT_EQ(Create(priv.attr().gfid(), "f", 0644, true, kBob).err(), 0);
  proto::NameRequest lookup;
  lookup.set_parent(priv.attr().gfid());
  lookup.set_name("f");
  EXPECT_EQ(Call(&Stub::Lookup, lookup, kAlice).err(), EACCES);
  EXPECT_EQ(Call(&Stub::Lookup, lookup, kBob).err(), 0);
  proto::ReadDirRequest list;
  list.set_gfid(priv.attr().gfid());
  list.set_max_entries(10);
  EXPECT_EQ(Call(&Stub::ReadDir, list, kAlice).err(), EACCES);
  EXPECT_EQ(Create(priv.attr().gfid(), "g", 0644, true, kAlice).err(), EACCES);

  // In a sticky directory only the file's owner (or the directory's)
  // removes or replaces it.
  const auto tmp = Mkdir(root_, "tmp", 01777, kRoot);
  ASSERT_EQ(tmp.err(), 0);
  ASSERT_EQ(Create(tmp.attr().gfid(), "bobs", 0644, true, kBob).err(), 0);
  ASSERT_EQ(Create(tmp.attr().gfid(), "alices", 0644, true, kAlice).err(), 0);
  proto::NameRequest unlink;
  unlink.set_parent(tmp.attr().gfid());
  unlink.set_name("bobs");
  EXPECT_EQ(Call(&Stub::Unlink, unlink, kAlice).err(), EPERM);
  proto::RenameRequest rename;
  rename.set_parent(tmp.attr().gfid());
  rename.set_name("alices");
  rename.set_new_parent(tmp.attr().gfid());
  rename.set_new_name("bobs");
  EXPECT_EQ(Call(&Stub::Rename, rename, kAlice).err(), EPERM);
  EXPECT_EQ(Call(&Stub::Unlink, unlink, kBob).err(), 0);
  EXPECT_EQ(Call(&Stub::Rename, rename, kAlice).err(), 0);

  // A directory moved to another parent needs write permission on itself.
  const auto open_dir = Mkdir(root_, "open", 0777, kRoot);
  const auto bobs_dir = Mkdir(tmp.attr().gfid(), "bobsdir", 0755, kBob);
  ASSERT_EQ(open_dir.err() | bobs_dir.err(), 0);
  const auto tmp2 = Mkdir(root_, "tmp2", 0777, kRoot);
  const auto moved = Mkdir(open_dir.attr().gfid(), "d", 0555, kAlice);
  ASSERT_EQ(tmp2.err() | moved.err(), 0);
  rename.set_parent(open_dir.attr().gfid());
  rename.set_name("d");
  rename.set_new_parent(tmp2.attr().gfid());
  rename.set_new_name("d");
  EXPECT_EQ(Call(&Stub::Rename, rename, kAlice).err(), EACCES);
  rename.set_new_parent(open_dir.attr().gfid());
  rename.set_new_name("e");
  EXPECT_EQ(Call(&Stub::Rename, rename, kAlice).err(), 0);  // same parent: allowed
}

TEST_F(PermissionTest, ExtendedAttributesByNamespace) {
  const uint64_t f = LocalFile("f", 0644, kBob.uid, kBob.gid);
  ASSERT_EQ(::setxattr((export_ + "/f").c_str(), "trusted.secret", "v", 1, 0), 0);
  proto::XattrRequest x;
  x.set_gfid(f);
  x.set_name("user.note");
  x.set_value("v");
  EXPECT_EQ(Call(&Stub::SetXattr, x, kAlice).err(), EACCES);  // no write permission
  EXPECT_EQ(Call(&Stub::SetXattr, x, kBob).err(), 0);
  x.set_size(100);
  EXPECT_EQ(Call(&Stub::GetXattr, x, kAlice).err(), 0);  // read permission
  x.set_name("trusted.secret");
  EXPECT_EQ(Call(&Stub::GetXattr, x, kBob).err(), ENODATA);
  EXPECT_EQ(Call(&Stub::SetXattr, x, kBob).err(), EPERM);
  EXPECT_EQ(Call(&Stub::GetXattr, x, kRoot).err(), 0);
  proto::XattrRequest list;
  list.set_gfid(f);
  list.set_size(1000);
  const auto names = Call(&Stub::ListXattr, list, kBob);
  ASSERT_EQ(names.err(), 0);
  EXPECT_EQ(names.value(), std::string("user.note\0", 10));
}

TEST_F(PermissionTest, CallsNamingNoUserActForTheAnonymousOne) {
  const uint64_t f = LocalFile("f", 0600, 0, 0);
  proto::GfidRequest req;
  req.set_gfid(f);
  proto::ReadRequest read;
  read.set_gfid(f);
  read.add_extents()->set_length(10);
  grpc::ClientContext ctx;
  proto::ReadReply rep;
  ASSERT_TRUE(stub_->Read(&ctx, read, &rep).ok());
  EXPECT_EQ(rep.err(), EACCES);

  grpc::ClientContext bad;
  bad.AddMetadata(kCallerKey, "root");
  const grpc::Status status = stub_->Read(&bad, read, &rep);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(CallerTest, EncodesAndDecodesOnlyWellFormedCallers) {
  const Caller c{1000, 100, {4, 24, 27}};
  EXPECT_EQ(EncodeCaller(c), "1000:100:4,24,27");
  Caller out;
  ASSERT_TRUE(DecodeCaller("1000:100:4,24,27", &out));
  EXPECT_EQ(out, c);
  ASSERT_TRUE(DecodeCaller("0:0", &out));
  EXPECT_EQ(out, Caller());
  for (const char* bad :
       {"", "1", "1:", ":1", "1:2:", "1:2:3,", "1:-2", "x:1", "1:2:3,,4", "4294967296:0", "1 :2"}) {
    EXPECT_FALSE(DecodeCaller(bad, &out)) << bad;
  }
  std::string many = "1:1:";
  for (size_t i = 0; i <= kMaxCallerGroups; i++) many += (i ? "," : "") + std::to_string(i);
  EXPECT_FALSE(DecodeCaller(many, &out));
}

TEST(ExportRuleTest, ParsesOptionsAndMapsUsers) {
  ExportRule rule;
  std::string error;
  ASSERT_TRUE(ExportRule::Parse("", &rule, &error));
  EXPECT_EQ(rule.access, Access::kReadWrite);
  EXPECT_EQ(rule.squash, Squash::kRoot);  // as exports(5)
  for (const char* bad : {"rx", "uids=5", "uids=9-1", "anonuid=-1", "gids=a-b", "squash"}) {
    EXPECT_FALSE(ExportRule::Parse(bad, &rule, &error)) << bad;
    EXPECT_EQ(error.find('\n'), std::string::npos);
  }
  ASSERT_TRUE(ExportRule::Parse("ro,root_squash,anonuid=7,anongid=8,gids=100-200", &rule, &error));
  Caller mapped;
  ASSERT_EQ(rule.Map(Caller{0, 0, {0, 150, 300}}, &mapped), 0);
  EXPECT_EQ(mapped, (Caller{7, 8, {150}}));  // root squashed, groups outside dropped
  EXPECT_EQ(rule.Map(Caller{1000, 50}, &mapped), EPERM);
}

}  // namespace
}  // namespace dfuse::storage::testing

namespace dfuse::storage::testing {
namespace {

// GFIDs that cannot be guessed into (storage/handle_secret.h).
class HandleKeyTest : public PermissionTest {
 protected:
  HandleKeyTest() { handle_keys_ = true; }

  // Calls `rpc` as `as`, naming `keys` for the request's GFIDs.
  template <typename Req, typename Rep>
  Rep CallWith(grpc::Status (proto::Storage::Stub::*rpc)(grpc::ClientContext*, const Req&, Rep*),
               const Req& req, const std::vector<std::pair<uint64_t, uint64_t>>& keys,
               const Caller& as = Caller()) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kCallerKey, EncodeCaller(as));
    if (!keys.empty()) ctx.AddMetadata(kHandleKeysKey, EncodeHandleKeys(keys));
    Rep rep;
    EXPECT_TRUE((stub_.get()->*rpc)(&ctx, req, &rep).ok());
    return rep;
  }

  proto::EntryReply LookupWith(uint64_t parent, uint64_t key, const std::string& name,
                               const Caller& as = Caller()) {
    proto::NameRequest req;
    req.set_parent(parent);
    req.set_name(name);
    return CallWith(&Stub::Lookup, req, {{parent, key}}, as);
  }

  int GetAttrWith(uint64_t gfid, uint64_t key, const Caller& as = Caller()) {
    proto::GfidRequest req;
    req.set_gfid(gfid);
    return CallWith(&Stub::GetAttr, req, {{gfid, key}}, as).err();
  }
};

TEST_F(HandleKeyTest, AGuessedGfidIsStaleWithoutTheKeyOnlyAPermittedLookupGives) {
  ASSERT_NE(root_key_, 0u);
  // Bob's private directory, with a file Alice could guess: its GFID is
  // the shard and the inode number.
  const std::string dir = export_ + "/bob";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), kBob.uid, kBob.gid), 0);
  const std::string file = dir + "/f";
  const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::close(fd);
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);

  const auto bob_dir = LookupWith(root_, root_key_, "bob", kAlice);
  ASSERT_EQ(bob_dir.err(), 0);
  const uint64_t dir_key = bob_dir.attr().handle_key();
  ASSERT_NE(dir_key, 0u);
  // Alice may not search it, so she gets no key for f...
  EXPECT_EQ(LookupWith(bob_dir.attr().gfid(), dir_key, "f", kAlice).err(), EACCES);
  proto::ReadDirRequest list;
  list.set_gfid(bob_dir.attr().gfid());
  list.set_max_entries(10);
  list.set_plus(true);
  EXPECT_EQ(CallWith(&Stub::ReadDir, list, {{bob_dir.attr().gfid(), dir_key}}, kAlice).err(),
            EACCES);
  // ... and her guess of its GFID is stale, with no key or a made-up one,
  // while Bob's lookup gives the key that works.
  const auto bobs = LookupWith(bob_dir.attr().gfid(), dir_key, "f", kBob);
  ASSERT_EQ(bobs.err(), 0);
  const uint64_t guessed = bobs.attr().gfid();
  EXPECT_EQ(GetAttrWith(guessed, 0, kAlice), ESTALE);
  EXPECT_EQ(GetAttrWith(guessed, bobs.attr().handle_key() ^ 1, kAlice), ESTALE);
  EXPECT_EQ(GetAttrWith(guessed, bobs.attr().handle_key(), kBob), 0);
  proto::GfidRequest no_keys;
  no_keys.set_gfid(guessed);
  EXPECT_EQ(Call(&Stub::GetAttr, no_keys).err(), ESTALE);  // root too needs the key
  EXPECT_EQ(server_->stats()->GetCounter("bad_handle_keys")->Get(), 3u);

  // A directory Alice may read but not search lists its names, without
  // the attributes (and keys) a lookup would have needed search for.
  ASSERT_EQ(::chmod(dir.c_str(), 0704), 0);
  const auto names = CallWith(&Stub::ReadDir, list, {{bob_dir.attr().gfid(), dir_key}}, kAlice);
  ASSERT_EQ(names.err(), 0);
  for (const auto& e : names.entries()) EXPECT_FALSE(e.has_attr()) << e.name();

  // Keys survive a restart of the service.
  const uint64_t key = bobs.attr().handle_key();
  StopServer();
  StartServer();
  EXPECT_EQ(GetAttrWith(guessed, key, kBob), 0);
}

// A hand-off (the attributes a durable write-back left the file with) goes
// through the lease manager to whoever asks for the file's lease, GFID
// known or not: it must not be a way to a key no lookup gave.
TEST_F(HandleKeyTest, AHandoffCarriesNoHandleKey) {
  const auto f = Create(root_, "handed");
  ASSERT_EQ(f.err(), 0);
  ASSERT_NE(f.attr().handle_key(), 0u);
  proto::WriteRequest w;
  w.set_gfid(f.attr().gfid());
  w.set_fencing_token(uint64_t{1} << 40 | 1);
  w.add_chunks()->set_data("abc");
  w.set_durable(true);
  const auto wr = Call(&Stub::Write, w);
  ASSERT_EQ(wr.err(), 0);
  proto::Handoff handed;
  ASSERT_TRUE(handed.ParseFromString(wr.handoff()));
  EXPECT_EQ(handed.attrs().gfid(), f.attr().gfid());
  EXPECT_EQ(handed.attrs().size(), 3u);
  EXPECT_EQ(handed.attrs().handle_key(), 0u);
}

}  // namespace
}  // namespace dfuse::storage::testing
