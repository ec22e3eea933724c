// The handle log on its own: replay, replacement, torn tails, wrong export.
#include "storage/handle_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "tests/unit/storage/storage_test_env.h"

namespace dfuse::storage::testing {
namespace {

class StorageHandleLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dfuse-handle-log-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<HandleLog> Open(HandleRecords* records, const std::string& root = "ROOT") {
    std::string error;
    auto log = HandleLog::Open(dir_, root, records, &error);
    EXPECT_TRUE(log || !error.empty());
    last_error_ = error;
    return log;
  }

  std::string dir_;
  std::string last_error_;
};

TEST_F(StorageHandleLogTest, ReplaysRecordsLaterLinesWin) {
  HandleRecords records;
  auto log = Open(&records);
  ASSERT_TRUE(log) << last_error_;
  EXPECT_TRUE(records.empty());
  ASSERT_EQ(log->Append({7, 1, std::string("h\0\xff", 3)}), 0);
  ASSERT_EQ(log->Append({8, 2, "other"}), 0);
  ASSERT_EQ(log->Append({7, 3, "reused"}), 0);  // inode number reused
  ASSERT_EQ(log->Sync(), 0);
  log.reset();

  log = Open(&records);
  ASSERT_TRUE(log) << last_error_;
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[7].handle, "reused");
  EXPECT_EQ(records[7].generation, 3u);
  EXPECT_EQ(records[8].handle, "other");
}

TEST_F(StorageHandleLogTest, TornTailIsDroppedAndNotGluedOnto) {
  HandleRecords records;
  auto log = Open(&records);
  ASSERT_TRUE(log);
  ASSERT_EQ(log->Append({1, 0, "one"}), 0);
  log.reset();
  {
    const int fd = ::open((dir_ + "/handles.log").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "2 0 74", 6), 6);  // a crash in the middle of a line
    ::close(fd);
  }
  log = Open(&records);
  ASSERT_TRUE(log) << last_error_;
  EXPECT_EQ(records.size(), 1u);
  ASSERT_EQ(log->Append({3, 0, "three"}), 0);
  log.reset();
  log = Open(&records);
  ASSERT_TRUE(log);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].handle, "one");
  EXPECT_EQ(records[3].handle, "three");
}

TEST_F(StorageHandleLogTest, RefusesTheLogOfAnotherExport) {
  HandleRecords records;
  ASSERT_TRUE(Open(&records, "export-a"));
  EXPECT_FALSE(Open(&records, "export-b"));
  EXPECT_NE(last_error_.find("another export"), std::string::npos) << last_error_;
}

TEST_F(StorageHandleLogTest, CompactsSupersededLines) {
  HandleRecords records;
  auto log = Open(&records);
  ASSERT_TRUE(log);
  for (int i = 0; i < 3000; i++) ASSERT_EQ(log->Append({5, uint64_t(i), "h"}), 0);
  log.reset();
  log = Open(&records);
  ASSERT_TRUE(log);
  EXPECT_EQ(records[5].generation, 2999u);
  EXPECT_LT(std::filesystem::file_size(dir_ + "/handles.log"), 100u);
}

}  // namespace
}  // namespace dfuse::storage::testing
