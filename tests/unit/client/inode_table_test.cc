// InodeTable: the kernel's lookup references, counted per GFID.
#include "impl/common/inode_table.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

// A FORGET's clean-up racing a LOOKUP of the same file: the new reference's
// state must be set up after the old one's is dropped, not dropped by it.
TEST(InodeTableTest, CleanUpOfTheLastReferenceFinishesBeforeANewReferenceIsSetUp) {
  InodeTable t;
  t.Ref(7, S_IFREG | 0644);
  std::mutex mu;
  std::vector<std::string> events;
  auto record = [&](const char* e) {
    std::lock_guard<std::mutex> l(mu);
    events.push_back(e);
  };
  std::promise<void> cleaning;
  std::thread forget([&] {
    EXPECT_TRUE(t.Unref(7, 1, [&] {
      cleaning.set_value();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      record("dropped");
    }));
  });
  cleaning.get_future().wait();
  t.Ref(7, S_IFREG | 0644, [&] { record("set up"); });
  forget.join();
  EXPECT_EQ(events, (std::vector<std::string>{"dropped", "set up"}));
  EXPECT_TRUE(t.IsRegular(7));
  bool cleaned = false;
  EXPECT_FALSE(t.Unref(8, 1, [&] { cleaned = true; }));  // unknown: no clean-up
  EXPECT_FALSE(cleaned);
}

}  // namespace
}  // namespace dfuse
