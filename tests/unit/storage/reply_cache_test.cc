// ReplyCache on its own: hits, misses, waiting for a running call, bounds.
#include "storage/reply_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

namespace dfuse::storage {
namespace {

using Outcome = ReplyCache::Outcome;

constexpr int kMkdir = 6;
constexpr int kUnlink = 9;

// Runs `id` through `cache`, counting executions in `runs`; the reply is
// `reply` if it executes.
Outcome RunOnce(ReplyCache* cache, ReplyCache::Id id, std::string* out, int* runs,
                const std::string& reply = "reply", int rpc = kMkdir, uint64_t fingerprint = 1) {
  return cache->Run(
      id, rpc, fingerprint,
      [&] {
        ++*runs;
        return reply;
      },
      out);
}

TEST(StorageReplyCacheTest, MissRunsAndHitReplays) {
  ReplyCache cache;
  std::string out;
  int runs = 0;
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "first"), Outcome::kExecuted);
  EXPECT_EQ(out, "first");
  EXPECT_EQ(runs, 1);
  out.clear();
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "second"), Outcome::kReplayed);
  EXPECT_EQ(out, "first");
  EXPECT_EQ(runs, 1);
  // Another seq, or the same seq of another client, is another call.
  EXPECT_EQ(RunOnce(&cache, {7, 2}, &out, &runs, "third"), Outcome::kExecuted);
  EXPECT_EQ(RunOnce(&cache, {8, 1}, &out, &runs, "fourth"), Outcome::kExecuted);
  EXPECT_EQ(out, "fourth");
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(cache.clients(), 2u);
  EXPECT_EQ(cache.calls(), 3u);
}

TEST(StorageReplyCacheTest, AnIdOfAnotherCallIsAMismatch) {
  ReplyCache cache;
  std::string out;
  int runs = 0;
  ASSERT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "mkdir a", kMkdir, 100), Outcome::kExecuted);
  out.clear();
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "unlink a", kUnlink, 100), Outcome::kMismatch);
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "mkdir b", kMkdir, 101), Outcome::kMismatch);
  EXPECT_EQ(out, "");
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "", kMkdir, 100), Outcome::kReplayed);
  EXPECT_EQ(out, "mkdir a");
}

TEST(StorageReplyCacheTest, RetryWaitsForTheRunningCall) {
  ReplyCache cache;
  std::promise<void> release;
  std::promise<void> started;
  std::atomic<int> runs{0};
  std::thread first([&] {
    std::string out;
    EXPECT_EQ(cache.Run(
                  {7, 1}, kMkdir, 1,
                  [&] {
                    runs++;
                    started.set_value();
                    release.get_future().wait();
                    return std::string("done");
                  },
                  &out),
              Outcome::kExecuted);
  });
  started.get_future().wait();
  std::atomic<bool> retried{false};
  std::string retry_out;
  std::thread retry([&] {
    EXPECT_EQ(cache.Run(
                  {7, 1}, kMkdir, 1,
                  [&] {
                    runs++;
                    return std::string("again");
                  },
                  &retry_out),
              Outcome::kReplayed);
    retried = true;
  });
  // Other calls are not held up meanwhile.
  std::string out;
  int other_runs = 0;
  EXPECT_EQ(RunOnce(&cache, {7, 2}, &out, &other_runs), Outcome::kExecuted);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(retried);
  release.set_value();
  first.join();
  retry.join();
  EXPECT_TRUE(retried);
  EXPECT_EQ(retry_out, "done");
  EXPECT_EQ(runs, 1);
}

TEST(StorageReplyCacheTest, EvictsAClientsOldestCalls) {
  ReplyCache cache(/*max_calls_per_client=*/3, /*max_clients=*/10);
  std::string out;
  int runs = 0;
  for (uint64_t seq = 1; seq <= 4; seq++) {
    ASSERT_EQ(RunOnce(&cache, {7, seq}, &out, &runs), Outcome::kExecuted);
  }
  ASSERT_EQ(RunOnce(&cache, {8, 1}, &out, &runs), Outcome::kExecuted);
  EXPECT_EQ(cache.calls(), 4u);  // 3 of client 7, 1 of client 8
  EXPECT_EQ(RunOnce(&cache, {7, 4}, &out, &runs), Outcome::kReplayed);
  EXPECT_EQ(RunOnce(&cache, {7, 2}, &out, &runs), Outcome::kReplayed);
  // Seq 1 was forgotten: it runs again, and pushes out seq 2.
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs), Outcome::kExecuted);
  EXPECT_EQ(RunOnce(&cache, {7, 2}, &out, &runs), Outcome::kExecuted);
  EXPECT_EQ(RunOnce(&cache, {8, 1}, &out, &runs), Outcome::kReplayed);
  EXPECT_EQ(cache.calls(), 4u);
  EXPECT_EQ(runs, 7);
}

TEST(StorageReplyCacheTest, EvictsTheLeastRecentlyUsedClient) {
  ReplyCache cache(/*max_calls_per_client=*/10, /*max_clients=*/2);
  std::string out;
  int runs = 0;
  ASSERT_EQ(RunOnce(&cache, {1, 1}, &out, &runs), Outcome::kExecuted);
  ASSERT_EQ(RunOnce(&cache, {1, 2}, &out, &runs), Outcome::kExecuted);
  ASSERT_EQ(RunOnce(&cache, {2, 1}, &out, &runs), Outcome::kExecuted);
  ASSERT_EQ(RunOnce(&cache, {1, 1}, &out, &runs), Outcome::kReplayed);  // client 1 used last
  ASSERT_EQ(RunOnce(&cache, {3, 1}, &out, &runs), Outcome::kExecuted);  // evicts client 2
  EXPECT_EQ(cache.clients(), 2u);
  EXPECT_EQ(cache.calls(), 3u);
  EXPECT_EQ(RunOnce(&cache, {1, 2}, &out, &runs), Outcome::kReplayed);
  EXPECT_EQ(RunOnce(&cache, {3, 1}, &out, &runs), Outcome::kReplayed);
  EXPECT_EQ(runs, 4);
  EXPECT_EQ(RunOnce(&cache, {2, 1}, &out, &runs), Outcome::kExecuted);  // evicts client 1
  EXPECT_EQ(runs, 5);
  EXPECT_EQ(cache.clients(), 2u);
  EXPECT_EQ(cache.calls(), 2u);
}

TEST(StorageReplyCacheTest, ACallThatThrowsIsForgotten) {
  ReplyCache cache;
  std::string out;
  EXPECT_THROW(
      cache.Run(
          {7, 1}, kMkdir, 1, []() -> std::string { throw std::runtime_error("boom"); }, &out),
      std::runtime_error);
  EXPECT_EQ(cache.calls(), 0u);
  int runs = 0;
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs, "ok"), Outcome::kExecuted);
  EXPECT_EQ(RunOnce(&cache, {7, 1}, &out, &runs), Outcome::kReplayed);
  EXPECT_EQ(out, "ok");
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace dfuse::storage
