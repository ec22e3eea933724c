// How -o options become a mount(2) call for a device libfuse does not open.
#include "impl/common/device_mount.h"

#include <sys/mount.h>

#include <gtest/gtest.h>

namespace dfuse {
namespace {

DeviceMount Mount(std::vector<std::string> options) {
  return DeviceMount{"/dev/dfuse", "dfuse", "/mnt", std::move(options)};
}

TEST(DeviceMountTest, NamesFlagsAndKernelOptions) {
  MountRequest req;
  std::string error;
  ASSERT_TRUE(TranslateMountOptions(
      Mount({"fsname=dfuse:h:7000", "subtype=dfuse-dfuse", "default_permissions", "allow_other",
             "ro", "noatime", "max_read=131072", "leases", "dirleases", "rw"}),
      &req, &error))
      << error;
  EXPECT_EQ(req.source, "dfuse:h:7000");
  EXPECT_EQ(req.type, "dfuse.dfuse-dfuse");
  EXPECT_EQ(req.flags, static_cast<unsigned long>(MS_NOSUID | MS_NODEV | MS_RDONLY | MS_NOATIME));
  EXPECT_EQ(req.data, "default_permissions,allow_other,max_read=131072,leases,dirleases");
}

TEST(DeviceMountTest, DefaultsWithoutOptions) {
  MountRequest req;
  std::string error;
  ASSERT_TRUE(TranslateMountOptions(Mount({}), &req, &error));
  EXPECT_EQ(req.source, "dfuse");
  EXPECT_EQ(req.type, "dfuse");
  EXPECT_EQ(req.data, "");
}

TEST(DeviceMountTest, UnknownOptionIsAClearError) {
  MountRequest req;
  std::string error;
  EXPECT_FALSE(TranslateMountOptions(Mount({"allow_other", "bogus=1"}), &req, &error));
  EXPECT_NE(error.find("bogus=1"), std::string::npos) << error;
  EXPECT_NE(error.find("/dev/dfuse"), std::string::npos) << error;
}

TEST(DeviceMountTest, MissingDeviceIsAClearError) {
  std::string error;
  DeviceMount m{"/nonexistent/dfuse", "dfuse", "/", {}};
  EXPECT_EQ(MountFuseDevice(m, &error), -1);
  EXPECT_NE(error.find("/nonexistent/dfuse"), std::string::npos) << error;
}

}  // namespace
}  // namespace dfuse
