#include "workloads/personalities/personality.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace dfuse::personality {
namespace {

class PersonalityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/personality-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  RunOptions Small(const Personality& p, size_t files) {
    RunOptions o;
    o.dir = dir_ + "/set";
    o.files = files;
    o.file_size = 8192;
    o.threads = 2;
    o.seconds = 0.3;
    return WithDefaults(p, o);
  }

  std::string dir_;
};

TEST_F(PersonalityTest, TableTwoParameters) {
  const Personality* fs = FindPersonality("fileserver");
  const Personality* ws = FindPersonality("webserver");
  const Personality* ns = FindPersonality("netsfs");
  ASSERT_TRUE(fs && ws && ns);
  EXPECT_EQ(fs->files, 10000u);
  EXPECT_EQ(ws->files, 80000u);
  EXPECT_EQ(ns->files, 74000u);
  EXPECT_EQ(fs->dir_width, 20u);
  EXPECT_EQ(fs->file_size, 1280u * 1024);
  EXPECT_EQ(ws->file_size, 160u * 1024);
  EXPECT_EQ(ns->file_size, 267u * 1024);
  EXPECT_EQ(FindPersonality("varmail"), nullptr);
  // The read:write ratios of Table 2, counted in the loops.
  auto ratio = [](const Personality& p) {
    int r = 0, w = 0;
    for (Flowop op : p.loop) r += IsRead(op), w += IsWrite(op);
    return std::make_pair(r, w);
  };
  EXPECT_EQ(ratio(*fs), std::make_pair(1, 2));
  EXPECT_EQ(ratio(*ws), std::make_pair(10, 1));
  EXPECT_EQ(ratio(*ns), std::make_pair(5, 2));
}

TEST_F(PersonalityTest, CreatePreallocatesTheShareOfFiles) {
  const Personality& p = *FindPersonality("fileserver");
  const RunOptions o = Small(p, 200);
  EXPECT_EQ(CreateFileset(p, o), 160u);  // 80 % preallocated
  struct stat st;
  ASSERT_EQ(stat((o.dir + "/d0/f0").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8192);
  EXPECT_NE(stat((o.dir + "/d4/f99").c_str(), &st), 0);  // 80..99 of each hundred are absent
}

TEST_F(PersonalityTest, RunRefusesAnEmptyFileset) {
  const Personality& p = *FindPersonality("webserver");
  EXPECT_THROW(RunWorkload(p, Small(p, 10)), std::runtime_error);
}

// `present` on one node and `run --present` on another agree with what a
// stat of every file would find, and a run takes the view it is given.
TEST_F(PersonalityTest, PresentFilesRoundTripsAndRunTakesIt) {
  const Personality& p = *FindPersonality("fileserver");
  RunOptions o = Small(p, 10);  // 80 % of each hundred preallocated: all ten
  EXPECT_EQ(PresentFiles(o), "000");
  CreateFileset(p, o);
  EXPECT_EQ(PresentFiles(o), "ff3");
  std::filesystem::remove(o.dir + "/d0/f1");
  const std::vector<bool> present = ParsePresent(PresentFiles(o), o.files);
  std::vector<bool> want = {true, true, true, true, true, true, true, true, true, true};
  EXPECT_EQ(ParsePresent("ff3", o.files), want);
  want[1] = false;
  EXPECT_EQ(present, want);
  EXPECT_THROW(ParsePresent("ff", 10), std::invalid_argument);   // too short
  EXPECT_THROW(ParsePresent("ffg", 10), std::invalid_argument);  // not hex
  EXPECT_THROW(ParsePresent("FF0", 10), std::invalid_argument);  // as printed: lower case
  // Told that nothing exists, the run does not look for itself.
  o.present = ParsePresent("000", o.files);
  EXPECT_THROW(RunWorkload(p, o), std::runtime_error);
}

// Every personality runs, moves bytes in its own read:write proportions,
// and reports consistent totals.
TEST_F(PersonalityTest, RunsEveryPersonality) {
  for (const std::string& name : PersonalityNames()) {
    SCOPED_TRACE(name);
    const Personality& p = *FindPersonality(name);
    const RunOptions o = Small(p, 100);
    CreateFileset(p, o);
    const nlohmann::json r = RunWorkload(p, o);
    EXPECT_GT(r["ops"].get<uint64_t>(), 0u);
    EXPECT_GT(r["read_bytes"].get<uint64_t>(), 0u);
    EXPECT_GT(r["write_bytes"].get<uint64_t>(), 0u);
    // Alone on the fileset, only its own threads' deletes can race a read.
    if (name != "fileserver") {
      EXPECT_EQ(r["races"].get<uint64_t>(), 0u);
    }
    uint64_t ops = 0;
    for (const auto& [op, s] : r["flowops"].items()) ops += s["count"].get<uint64_t>();
    EXPECT_EQ(ops, r["ops"].get<uint64_t>());
    // Whole loops dominate, so reads:writes is near the loop's ratio.
    const double ratio = r["reads"].get<double>() / r["writes"].get<double>();
    int loop_r = 0, loop_w = 0;
    for (Flowop op : p.loop) loop_r += IsRead(op), loop_w += IsWrite(op);
    EXPECT_NEAR(ratio, static_cast<double>(loop_r) / loop_w, 0.5 * loop_r / loop_w);
    std::filesystem::remove_all(o.dir);
  }
}

TEST_F(PersonalityTest, FileserverKeepsItsFilesetAlive) {
  // Creates and deletes take turns, so the fileset neither empties nor fills.
  const Personality& p = *FindPersonality("fileserver");
  const RunOptions o = Small(p, 100);
  CreateFileset(p, o);
  const nlohmann::json r = RunWorkload(p, o);
  const uint64_t creates = r["flowops"]["create"]["count"];
  const uint64_t deletes = r["flowops"]["delete"]["count"];
  EXPECT_GT(creates, 0u);
  EXPECT_LE(creates > deletes ? creates - deletes : deletes - creates, 2u * o.threads);
}

}  // namespace
}  // namespace dfuse::personality
