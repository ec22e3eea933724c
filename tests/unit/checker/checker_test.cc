#include "workloads/consistency/checker.h"

#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "tests/unit/checker/history_builder.h"

namespace dfuse::checker {
namespace {

using testing::R;
using testing::W;

TEST(CheckHistory, SplitsByFileAndBlock) {
  // Each register on its own is linearizable; mixed together they would not
  // be (value 1 is read from block 1, where it was never written).
  Op other_file = R(2, 0, 4, 5);
  other_file.file = 1;
  const std::vector<Op> ops = {W(0, 1, 0, 1, 0), W(1, 2, 0, 1, 1), R(2, 1, 2, 3, 0),
                               R(2, 2, 2, 3, 1), other_file};
  const Report report = CheckHistory(ops, {});
  EXPECT_EQ(report.operations, 5u);
  EXPECT_EQ(report.reads, 3u);
  EXPECT_EQ(report.writes, 2u);
  EXPECT_EQ(report.registers, 3u);
  EXPECT_EQ(report.violations, 0u);
  EXPECT_EQ(report.unknown, 0u);
  EXPECT_TRUE(report.violating.empty());
}

TEST(CheckHistory, CountsEveryViolationButReportsAtMostTheCap) {
  std::vector<Op> ops;
  for (uint32_t block = 0; block < 5; ++block) {
    ops.push_back(W(0, 10 + block, 0, 1, block));
    ops.push_back(R(1, 0, 2, 3, block));  // stale: the write had returned
  }
  CheckOptions options;
  options.max_reported = 2;
  const Report report = CheckHistory(ops, options);
  EXPECT_EQ(report.violations, 5u);
  ASSERT_EQ(report.violating.size(), 2u);
  EXPECT_EQ(report.violating[0].block, 0u);
  ASSERT_EQ(report.violating[0].history.size(), 2u);
  EXPECT_TRUE(report.violating[0].history[0].is_write());  // by invocation time
}

TEST(CheckHistory, TornReadsAreCountedAndViolate) {
  Op torn = R(1, 5, 2, 3);
  torn.torn = true;
  const Report report = CheckHistory({W(0, 1, 0, 1), torn, torn}, {});
  EXPECT_EQ(report.torn_reads, 2u);
  EXPECT_EQ(report.local_torn_reads, 0u);  // the write returned before
  EXPECT_EQ(report.violations, 1u);
  EXPECT_EQ(report.non_linearizable, 0u);
}

TEST(CheckHistory, ReportJsonHasTheDocumentedFields) {
  const Report report = CheckHistory({W(0, 1, 0, 1), R(1, 0, 2, 3)}, {});
  const nlohmann::json j = ReportToJson(report);
  for (const char* key :
       {"operations", "reads", "writes", "registers", "violations", "non_linearizable", "unknown",
        "torn_reads", "local_torn_reads", "per_register", "violating", "seconds"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["violations"], 1);
  EXPECT_EQ(j["per_register"][0]["result"], "violation");
  const nlohmann::json& op = j["violating"][0]["history"][1];
  EXPECT_EQ(op["kind"], "read");
  EXPECT_EQ(op["process"], 1);
  EXPECT_EQ(op["invoke_ns"], 2);
  EXPECT_EQ(op["return_ns"], 3);
}

TEST(History, RoundTripsThroughJsonLines) {
  Op failed = W(7, (uint64_t{9} << 40) | 3, 100, 200);
  failed.ok = false;
  failed.node = 2;
  Op torn = R(1, ~uint64_t{0}, 5, 6, 3);
  torn.torn = true;
  const std::vector<Op> ops = {failed, torn};
  std::stringstream s;
  WriteHistory(s, ops);
  const std::vector<Op> back = ReadHistory(s);
  ASSERT_EQ(back.size(), 2u);
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(OpToJson(back[i]), OpToJson(ops[i]));
  }
}

TEST(History, MalformedLineNamesItsNumber) {
  std::stringstream s(
      "{\"process\":0,\"kind\":\"write\",\"file\":0,\"block\":0,\"value\":1,"
      "\"invoke_ns\":0,\"return_ns\":1}\n{\"kind\":\"scribble\"}\n");
  try {
    ReadHistory(s);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

// Found by fuzz_checker_history: numbers a field's type cannot hold were
// converted with an undefined cast instead of being refused.
TEST(History, NumbersOutOfRangeAreMalformed) {
  const std::string good =
      "{\"process\":1,\"kind\":\"read\",\"file\":0,\"block\":0,\"value\":1,"
      "\"invoke_ns\":0,\"return_ns\":1}";
  std::stringstream ok(good);
  EXPECT_EQ(ReadHistory(ok).size(), 1u);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"return_ns\":1}", "\"return_ns\":2e+47}"},
           {"\"return_ns\":1}", "\"return_ns\":1.5}"},
           {"\"process\":1", "\"process\":-1"},
           {"\"process\":1", "\"process\":4294967296"},
           {"\"value\":1", "\"value\":-3"},
           {"\"value\":1", "\"value\":18446744073709551616"},
           {"\"process\":1", "\"process\":1,\"node\":\"x\""}}) {
    std::string line = good;
    line.replace(line.find(from), from.size(), to);
    std::stringstream s(line);
    EXPECT_THROW(ReadHistory(s), std::runtime_error) << line;
  }
}

}  // namespace
}  // namespace dfuse::checker
