// InodeTable: the kernel's lookup references, counted per GFID.
#include "impl/common/inode_table.h"

#include <gtest/gtest.h>

namespace dfuse {
namespace {

TEST(InodeTableTest, LastForgetReportsTheInodeGone) {
  InodeTable t;
  t.Ref(7, S_IFREG | 0644);
  t.Ref(7, S_IFREG | 0644);
  t.Ref(7, S_IFREG | 0644);
  EXPECT_TRUE(t.IsRegular(7));
  EXPECT_FALSE(t.Unref(7, 2));
  EXPECT_TRUE(t.IsRegular(7));
  EXPECT_TRUE(t.Unref(7, 1));
  EXPECT_FALSE(t.IsRegular(7));
  EXPECT_EQ(t.size(), 0u);
}

TEST(InodeTableTest, ForgetOfMoreThanHeldOrOfAnUnknownInode) {
  InodeTable t;
  EXPECT_FALSE(t.Unref(9, 1));  // never handed out: nothing to drop
  t.Ref(9, S_IFDIR | 0755);
  EXPECT_TRUE(t.Unref(9, 5));  // the kernel's count is the truth
  EXPECT_EQ(t.size(), 0u);
}

TEST(InodeTableTest, TypeComesFromTheLatestReply) {
  InodeTable t;
  t.Ref(3, S_IFDIR | 0755);
  EXPECT_FALSE(t.IsRegular(3));
  t.Ref(3, S_IFREG | 0600);  // a reused inode number
  EXPECT_TRUE(t.IsRegular(3));
}

TEST(InodeTableTest, CapabilityStateIsKeptPerInodeAndForgottenWithIt) {
  InodeTable t;
  EXPECT_EQ(t.CapabilityState(4), -1);
  t.SetCapabilityState(4, 0);  // unknown inode: not recorded
  EXPECT_EQ(t.CapabilityState(4), -1);
  t.Ref(4, S_IFREG | 0644);
  t.SetCapabilityState(4, 0);
  EXPECT_EQ(t.CapabilityState(4), 0);
  t.SetCapabilityState(4, 1);
  EXPECT_EQ(t.CapabilityState(4), 1);
  EXPECT_TRUE(t.Unref(4, 1));
  t.Ref(4, S_IFREG | 0644);
  EXPECT_EQ(t.CapabilityState(4), -1);
}

}  // namespace
}  // namespace dfuse
