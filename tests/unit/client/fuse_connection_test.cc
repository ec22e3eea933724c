// Finding a mount's FUSE connection in mountinfo without touching the mount.
#include "impl/common/fuse_connection.h"

#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace dfuse {
namespace {

constexpr char kMountinfo[] =
    "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "40 22 0:35 / /mnt/a rw,nosuid,nodev,relatime shared:20 - fuse.dfuse-writethrough "
    "127.0.0.1:7000 rw,user_id=0,group_id=0\n"
    "41 22 0:36 / /mnt/with\\040space rw - fuse.dfuse-weakwriteback s rw\n"
    "42 22 0:52 / /mnt/k rw - dfuse.dfuse-dfuse s rw\n"
    "43 22 0:37 / /mnt/tmp rw - tmpfs tmpfs rw\n"
    "44 22 0:38 / /mnt/a rw - fuse.dfuse-writethrough 127.0.0.1:7000 rw\n";

int Find(const std::string& mountpoint) {
  std::istringstream in(kMountinfo);
  return FuseConnectionIn(in, mountpoint);
}

TEST(FuseConnectionTest, FindsTheLastFuseMountOnAPath) {
  EXPECT_EQ(Find("/mnt/a"), 38);  // mounted over the first one
  EXPECT_EQ(Find("/mnt/with space"), 36);
  EXPECT_EQ(Find("/mnt/k"), 52);  // dfuse.ko's file system type
}

TEST(FuseConnectionTest, OtherFileSystemsAndUnknownPathsHaveNone) {
  EXPECT_EQ(Find("/mnt/tmp"), -1);
  EXPECT_EQ(Find("/"), -1);
  EXPECT_EQ(Find("/mnt/none"), -1);
  std::istringstream garbage("not a mountinfo line\n\n1 2\n");
  EXPECT_EQ(FuseConnectionIn(garbage, "/mnt/a"), -1);
}

TEST(FuseConnectionTest, AbortingNoConnectionSaysWhy) {
  std::string error;
  EXPECT_FALSE(AbortFuseConnection(-1, &error));
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace dfuse
