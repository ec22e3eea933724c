// The fencing rule: untokened calls only on files never changed under a
// token, lower tokens refused, the highest token kept across restarts in an
// attribute the xattr RPCs never show.
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "storage/fencing.h"
#include "tests/unit/storage/storage_test_env.h"

namespace dfuse::storage::testing {
namespace {

using Stub = proto::Storage::Stub;

class StorageFencingRuleTest : public StorageTest {
 protected:
  // Creates `name` in the root and returns its GFID.
  uint64_t NewFile(const std::string& name) {
    const auto f = Create(root_, name);
    EXPECT_EQ(f.err(), 0);
    return f.attr().gfid();
  }

  int Truncate(uint64_t gfid, uint64_t size, uint64_t token) {
    proto::SetAttrRequest req;
    req.set_gfid(gfid);
    req.set_valid(proto::SETATTR_SIZE);
    req.set_size(size);
    req.set_fencing_token(token);
    return Call(&Stub::SetAttr, req).err();
  }

  int Fallocate(uint64_t gfid, uint64_t offset, uint64_t length, uint64_t token) {
    proto::FallocateRequest req;
    req.set_gfid(gfid);
    req.set_offset(offset);
    req.set_length(length);
    req.set_fencing_token(token);
    return Call(&Stub::Fallocate, req).err();
  }

  uint64_t Size(uint64_t gfid) { return GetAttr(gfid).attr().size(); }

  // The token stored on the backing file `name`; 0 if there is none.
  uint64_t StoredToken(const std::string& name) {
    unsigned char buf[8];
    const ssize_t n = ::getxattr((export_ + "/" + name).c_str(), kFencingXattr, buf, sizeof(buf));
    if (n < 0) {
      EXPECT_EQ(errno, ENODATA) << std::strerror(errno);
      return 0;
    }
    EXPECT_EQ(n, 8);
    uint64_t token = 0;
    for (int i = 0; i < 8; i++) token |= uint64_t{buf[i]} << (8 * i);
    return token;
  }

  void SetStoredToken(const std::string& name, uint64_t token) {
    unsigned char buf[8];
    for (int i = 0; i < 8; i++) buf[i] = static_cast<unsigned char>(token >> (8 * i));
    ASSERT_EQ(::setxattr((export_ + "/" + name).c_str(), kFencingXattr, buf, sizeof(buf), 0), 0);
  }

  uint64_t Fenced() { return server_->stats()->GetCounter("fenced_writes")->Get(); }
};

TEST_F(StorageFencingRuleTest, TokenZeroIsRefusedAfterATokenedWrite) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "untokened", 0).err(), 0);  // not leased yet
  ASSERT_EQ(Write(g, 0, "leased", 3).err(), 0);
  EXPECT_EQ(Write(g, 0, "late!!", 0).err(), ESTALE);
  EXPECT_EQ(ReadString(g, 0, 100), "leasedned");
  EXPECT_EQ(Fenced(), 1u);
}

TEST_F(StorageFencingRuleTest, TokenZeroStaysFineOnANeverLeasedFile) {
  const uint64_t g = NewFile("f");
  for (int i = 0; i < 3; i++) ASSERT_EQ(Write(g, i, "abc", 0).err(), 0);
  EXPECT_EQ(Truncate(g, 2, 0), 0);
  EXPECT_EQ(Fallocate(g, 0, 4096, 0), 0);
  EXPECT_EQ(Size(g), 4096u);
  EXPECT_EQ(StoredToken("f"), 0u);  // nothing stored for untokened calls
  // Another file being leased changes nothing for this one.
  ASSERT_EQ(Write(NewFile("other"), 0, "x", 7).err(), 0);
  EXPECT_EQ(Write(g, 0, "z", 0).err(), 0);
  StopServer();
  StartServer();
  EXPECT_EQ(Write(g, 0, "y", 0).err(), 0);
  EXPECT_EQ(ReadString(g, 0, 3), std::string("ya\0", 3));
  EXPECT_EQ(Fenced(), 0u);
}

TEST_F(StorageFencingRuleTest, LowerTokensAreRefusedEqualAndHigherAdmitted) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "5", 5).err(), 0);
  EXPECT_EQ(Write(g, 0, "4", 4).err(), ESTALE);
  EXPECT_EQ(Write(g, 0, "5", 5).err(), 0);
  EXPECT_EQ(Write(g, 0, "7", 7).err(), 0);
  EXPECT_EQ(Write(g, 0, "6", 6).err(), ESTALE);
  EXPECT_EQ(Write(g, 0, "5", 5).err(), ESTALE);
  EXPECT_EQ(ReadString(g, 0, 10), "7");
  EXPECT_EQ(StoredToken("f"), 7u);
  EXPECT_EQ(Fenced(), 3u);
}

TEST_F(StorageFencingRuleTest, TokenIsStoredOnlyWhenItGrows) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "a", 5).err(), 0);
  EXPECT_EQ(StoredToken("f"), 5u);
  // Behind the running service's back: an equal token must not rewrite the
  // attribute, a higher one must.
  SetStoredToken("f", 9);
  ASSERT_EQ(Write(g, 0, "b", 5).err(), 0);
  EXPECT_EQ(StoredToken("f"), 9u);
  ASSERT_EQ(Write(g, 0, "c", 6).err(), 0);
  EXPECT_EQ(StoredToken("f"), 6u);
}

TEST_F(StorageFencingRuleTest, MalformedCallsDoNotRaiseTheToken) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "a", 5).err(), 0);
  EXPECT_EQ(Write(g, INT64_MAX, "too far", 9).err(), EFBIG);
  // Well-formed for the service, refused by fallocate(2) once admitted.
  EXPECT_EQ(Fallocate(g, 0, 0, 9), EINVAL);
  EXPECT_EQ(StoredToken("f"), 9u);
  EXPECT_EQ(Write(g, 0, "b", 8).err(), ESTALE);
  const uint64_t h = NewFile("h");
  EXPECT_EQ(Write(h, UINT64_MAX, "x", 3).err(), EINVAL);
  EXPECT_EQ(StoredToken("h"), 0u);
  EXPECT_EQ(Write(h, 0, "x", 0).err(), 0);  // still never leased
}

TEST_F(StorageFencingRuleTest, HighestTokenSurvivesARestart) {
  const uint64_t g = NewFile("f");
  const uint64_t h = NewFile("h");
  ASSERT_EQ(Write(g, 0, "five", 5).err(), 0);
  ASSERT_EQ(Write(h, 0, "weak", 0).err(), 0);
  StopServer();
  StartServer();
  EXPECT_EQ(Write(g, 0, "four", 4).err(), ESTALE);
  EXPECT_EQ(Write(g, 0, "zero", 0).err(), ESTALE);
  EXPECT_EQ(Truncate(g, 0, 0), ESTALE);
  EXPECT_EQ(Fallocate(g, 0, 100, 4), ESTALE);
  EXPECT_EQ(ReadString(g, 0, 100), "five");
  EXPECT_EQ(Write(h, 0, "WEAK", 0).err(), 0);
  EXPECT_EQ(Write(g, 0, "FIVE", 5).err(), 0);
  EXPECT_EQ(Write(g, 0, "six!", 6).err(), 0);
  StopServer();
  StartServer();
  EXPECT_EQ(Write(g, 0, "5", 5).err(), ESTALE);
  EXPECT_EQ(ReadString(g, 0, 100), "six!");
  // The token belongs to the file, whatever name or link reaches it.
  ASSERT_EQ(Rename(root_, "f", root_, "g"), 0);
  StopServer();
  StartServer();
  EXPECT_EQ(Write(g, 0, "0", 0).err(), ESTALE);
  EXPECT_EQ(StoredToken("g"), 6u);
}

TEST_F(StorageFencingRuleTest, TruncateAndFallocateFollowTheSameRule) {
  // Truncate under a token leases the file.
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "0123456789", 0).err(), 0);
  EXPECT_EQ(Truncate(g, 8, 0), 0);
  EXPECT_EQ(Truncate(g, 6, 2), 0);
  EXPECT_EQ(Truncate(g, 4, 0), ESTALE);
  EXPECT_EQ(Truncate(g, 4, 1), ESTALE);
  EXPECT_EQ(Size(g), 6u);
  EXPECT_EQ(Fallocate(g, 0, 8192, 0), ESTALE);
  EXPECT_EQ(Fallocate(g, 0, 8192, 1), ESTALE);
  EXPECT_EQ(Size(g), 6u);
  EXPECT_EQ(Write(g, 0, "x", 0).err(), ESTALE);
  EXPECT_EQ(Fallocate(g, 0, 8192, 2), 0);
  EXPECT_EQ(Truncate(g, 4, 3), 0);
  EXPECT_EQ(Size(g), 4u);
  EXPECT_EQ(StoredToken("f"), 3u);

  // So does Fallocate.
  const uint64_t h = NewFile("h");
  EXPECT_EQ(Fallocate(h, 0, 4096, 0), 0);
  EXPECT_EQ(Fallocate(h, 0, 8192, 4), 0);
  EXPECT_EQ(Truncate(h, 0, 0), ESTALE);
  EXPECT_EQ(Write(h, 0, "x", 0).err(), ESTALE);
  EXPECT_EQ(Size(h), 8192u);
  EXPECT_EQ(Truncate(h, 0, 4), 0);
  EXPECT_EQ(Size(h), 0u);

  // A refused SetAttr applies none of its other changes either.
  proto::SetAttrRequest sa;
  sa.set_gfid(h);
  sa.set_valid(proto::SETATTR_SIZE | proto::SETATTR_MODE);
  sa.set_mode(0600);
  sa.set_size(10);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), ESTALE);
  EXPECT_EQ(GetAttr(h).attr().mode(), S_IFREG | 0644u);
  // Without a size, SetAttr is no data change and takes no token.
  sa.set_valid(proto::SETATTR_MODE);
  EXPECT_EQ(Call(&Stub::SetAttr, sa).err(), 0);
  EXPECT_EQ(GetAttr(h).attr().mode(), S_IFREG | 0600u);
}

TEST_F(StorageFencingRuleTest, TokenAttributeIsInvisibleThroughXattrCalls) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "x", 5).err(), 0);
  ASSERT_EQ(StoredToken("f"), 5u);

  proto::XattrRequest list;
  list.set_gfid(g);
  auto l = Call(&Stub::ListXattr, list);
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.size(), 0u);
  proto::XattrRequest set;
  set.set_gfid(g);
  set.set_name("user.k");
  set.set_value("v");
  ASSERT_EQ(Call(&Stub::SetXattr, set).err(), 0);
  l = Call(&Stub::ListXattr, list);  // size only
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.size(), 7u);
  list.set_size(7);  // exactly what the visible names need
  l = Call(&Stub::ListXattr, list);
  ASSERT_EQ(l.err(), 0);
  EXPECT_EQ(l.value(), std::string("user.k\0", 7));
  list.set_size(6);
  EXPECT_EQ(Call(&Stub::ListXattr, list).err(), ERANGE);

  proto::XattrRequest get;
  get.set_gfid(g);
  get.set_name(kFencingXattr);
  EXPECT_EQ(Call(&Stub::GetXattr, get).err(), ENODATA);
  get.set_size(100);
  EXPECT_EQ(Call(&Stub::GetXattr, get).err(), ENODATA);

  proto::XattrRequest forge;
  forge.set_gfid(g);
  forge.set_name(kFencingXattr);
  forge.set_value(std::string(8, '\0'));
  EXPECT_EQ(Call(&Stub::SetXattr, forge).err(), EPERM);
  forge.set_flags(XATTR_REPLACE);
  EXPECT_EQ(Call(&Stub::SetXattr, forge).err(), EPERM);
  forge.set_flags(XATTR_CREATE);
  EXPECT_EQ(Call(&Stub::SetXattr, forge).err(), EPERM);

  proto::XattrRequest rm;
  rm.set_gfid(g);
  rm.set_name(kFencingXattr);
  EXPECT_EQ(Call(&Stub::RemoveXattr, rm).err(), ENODATA);

  // The attribute is untouched and still fences, also after a restart.
  EXPECT_EQ(StoredToken("f"), 5u);
  StopServer();
  StartServer();
  EXPECT_EQ(Write(g, 0, "y", 4).err(), ESTALE);
  EXPECT_EQ(Write(g, 0, "y", 0).err(), ESTALE);
  // On a never-leased file the name does not exist either.
  const uint64_t h = NewFile("h");
  get.set_gfid(h);
  EXPECT_EQ(Call(&Stub::GetXattr, get).err(), ENODATA);
  forge.set_gfid(h);
  forge.set_flags(0);
  EXPECT_EQ(Call(&Stub::SetXattr, forge).err(), EPERM);
  EXPECT_EQ(StoredToken("h"), 0u);
}

TEST_F(StorageFencingRuleTest, MalformedStoredTokenRefusesEveryCall) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(::setxattr((export_ + "/f").c_str(), kFencingXattr, "bad", 3, 0), 0);
  EXPECT_EQ(Write(g, 0, "x", 0).err(), EIO);
  EXPECT_EQ(Write(g, 0, "x", 100).err(), EIO);
  EXPECT_EQ(ReadString(g, 0, 10), "");
  EXPECT_EQ(Fenced(), 0u);  // refused, but not fenced off
}

// What a durable write under a token hands over: the bytes changed under
// that token, which the next holders drop from the pages they kept.
class StorageHandoffTest : public StorageFencingRuleTest {
 protected:
  // A durable, data-less write under `token`: the revoke's last call.
  proto::Handoff HandOff(uint64_t gfid, uint64_t token) {
    proto::WriteRequest req;
    req.set_gfid(gfid);
    req.set_fencing_token(token);
    req.set_durable(true);
    const auto reply = Call(&Stub::Write, req);
    EXPECT_EQ(reply.err(), 0);
    proto::Handoff handoff;
    EXPECT_TRUE(handoff.ParseFromString(reply.handoff()));
    return handoff;
  }
  // (offset, length) of each range, length 0 to the end.
  static std::vector<std::pair<uint64_t, uint64_t>> Written(const proto::Handoff& h) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const auto& e : h.written()) out.emplace_back(e.offset(), e.length());
    return out;
  }
  using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
};

TEST_F(StorageHandoffTest, NamesTheBytesWrittenUnderTheTokenOnly) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, std::string(8192, 'a'), 5).err(), 0);
  EXPECT_FALSE(HandOff(g, 5).written_known()) << "raised by the first call since the start";
  ASSERT_EQ(Write(g, 100, "bb", 6).err(), 0);  // a new token: a new set
  ASSERT_EQ(Write(g, 4096, "cc", 6).err(), 0);
  ASSERT_EQ(Write(g, 102, "dd", 6).err(), 0);  // touches the first: merged
  proto::Handoff h = HandOff(g, 6);
  ASSERT_TRUE(h.written_known());
  EXPECT_EQ(Written(h), (Ranges{{100, 4}, {4096, 2}}));
  EXPECT_EQ(h.attrs().size(), 8192u);
  // A refused call changes nothing.
  EXPECT_EQ(Write(g, 0, "zz", 5).err(), ESTALE);
  EXPECT_EQ(Written(HandOff(g, 6)), (Ranges{{100, 4}, {4096, 2}}));
  // Nothing written under a new token: nothing to drop.
  h = HandOff(g, 7);
  ASSERT_TRUE(h.written_known());
  EXPECT_TRUE(h.written().empty());
}

TEST_F(StorageHandoffTest, ASizeChangeOrFallocateRunsToTheEnd) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, std::string(100, 'a'), 5).err(), 0);
  ASSERT_EQ(Truncate(g, 10, 6), 0);
  EXPECT_EQ(Written(HandOff(g, 6)), (Ranges{{10, 0}}));
  ASSERT_EQ(Fallocate(g, 50, 10, 7), 0);
  EXPECT_EQ(Written(HandOff(g, 7)), (Ranges{{50, 0}}));
}

TEST_F(StorageHandoffTest, ChangesBeforeARestartAreNotKnown) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "abc", 5).err(), 0);
  StopServer();
  StartServer();
  // Calls under token 5 before the restart are forgotten.
  proto::Handoff h = HandOff(g, 5);
  EXPECT_FALSE(h.written_known());
  EXPECT_EQ(h.attrs().size(), 3u) << "the attributes are still handed over";
  // A new token starts afresh.
  ASSERT_EQ(Write(g, 1, "x", 6).err(), 0);
  h = HandOff(g, 6);
  ASSERT_TRUE(h.written_known());
  EXPECT_EQ(Written(h), (Ranges{{1, 1}}));
  // Raised by the first call after a restart: a crash could have lost the
  // stored token while writes under the new one reached the disk.
  StopServer();
  StartServer();
  ASSERT_EQ(Write(g, 2, "y", 7).err(), 0);
  EXPECT_FALSE(HandOff(g, 7).written_known());
  ASSERT_EQ(Write(g, 3, "z", 8).err(), 0);
  EXPECT_EQ(Written(HandOff(g, 8)), (Ranges{{3, 1}}));
}

TEST_F(StorageHandoffTest, ManyRangesMergeIntoOnesThatCoverThemAll) {
  const uint64_t g = NewFile("f");
  ASSERT_EQ(Write(g, 0, "a", 4).err(), 0);  // the first token after a start is never known
  // Every other 4 KiB block: more ranges than the table keeps per file.
  const size_t n = 2 * FencingTable::kMaxWrittenRanges;
  for (size_t i = 0; i < n; i++) ASSERT_EQ(Write(g, 8192 * i, "x", 5).err(), 0);
  const proto::Handoff h = HandOff(g, 5);
  ASSERT_TRUE(h.written_known());
  ASSERT_LE(static_cast<size_t>(h.written_size()), FencingTable::kMaxWrittenRanges);
  for (size_t i = 0; i < n; i++) {
    bool covered = false;
    for (const auto& e : h.written()) {
      covered |= e.offset() <= 8192 * i && 8192 * i + 1 <= e.offset() + e.length();
    }
    EXPECT_TRUE(covered) << "block " << i;
  }
}

}  // namespace
}  // namespace dfuse::storage::testing
