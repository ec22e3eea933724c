#include "workloads/consistency/register_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "tests/unit/checker/history_builder.h"

namespace dfuse::checker {
namespace {

using testing::R;
using testing::W;

constexpr uint64_t kBudget = 10'000'000;

// Both the full search alone and the complete check (simple witnesses
// first) must reach the expected verdict.
void ExpectVerdict(const std::vector<Op>& ops, Verdict want) {
  EXPECT_EQ(SearchRegister(ops, kBudget).verdict, want) << "search";
  EXPECT_EQ(CheckRegister(ops, kBudget).verdict, want) << "check";
}

TEST(RegisterCheck, EmptyHistoryIsLinearizable) { ExpectVerdict({}, Verdict::kLinearizable); }

TEST(RegisterCheck, SequentialHistoryIsLinearizable) {
  ExpectVerdict(
      {R(0, 0, 0, 1), W(0, 1, 2, 3), R(1, 1, 4, 5), W(1, 2, 6, 7), R(0, 2, 8, 9), R(2, 2, 10, 11)},
      Verdict::kLinearizable);
}

TEST(RegisterCheck, ConcurrentWritesAllowEitherOrder) {
  // w1 and w2 overlap, so a later read may see either, and a read that
  // overlaps both may also see the initial value.
  for (uint64_t seen : {1, 2}) {
    ExpectVerdict(
        {W(0, 1, 0, 10), W(1, 2, 5, 15), R(2, 0, 1, 20), R(2, seen, 21, 22), R(3, seen, 23, 24)},
        Verdict::kLinearizable);
  }
}

TEST(RegisterCheck, ReadsOverlappingAWriteMaySeeOldThenNew) {
  // r0 sees the new value while r1, invoked earlier and overlapping the
  // write, still sees the old one: fine, r1 is linearized first.
  ExpectVerdict({W(0, 1, 0, 1), W(0, 2, 10, 30), R(1, 1, 11, 25), R(2, 2, 12, 13)},
                Verdict::kLinearizable);
}

TEST(RegisterCheck, OperationsWithEqualTimesAreConcurrent) {
  ExpectVerdict({W(0, 1, 0, 5), R(1, 0, 5, 6)}, Verdict::kLinearizable);
}

TEST(RegisterCheck, StaleReadAfterWriteReturnedIsAViolation) {
  ExpectVerdict({W(0, 1, 0, 1), W(1, 2, 2, 3), R(2, 1, 4, 5)}, Verdict::kViolation);
}

TEST(RegisterCheck, ReadOfInitialValueAfterWriteReturnedIsAViolation) {
  ExpectVerdict({W(0, 1, 0, 1), R(1, 0, 2, 3)}, Verdict::kViolation);
}

TEST(RegisterCheck, ReadBeforeItsWriteWasInvokedIsAViolation) {
  ExpectVerdict({R(1, 7, 0, 1), W(0, 7, 2, 3)}, Verdict::kViolation);
}

TEST(RegisterCheck, ReadOfAValueNobodyWroteIsAViolation) {
  ExpectVerdict({W(0, 1, 0, 1), R(1, 99, 2, 3)}, Verdict::kViolation);
}

TEST(RegisterCheck, ReadOfValueOverwrittenBeforeTheReadBeganIsAViolation) {
  // The read overlaps neither write: it began after w2 replaced w1.
  ExpectVerdict({W(0, 1, 0, 10), R(1, 1, 11, 12), W(0, 2, 13, 20), R(1, 1, 21, 30)},
                Verdict::kViolation);
}

TEST(RegisterCheck, LostUpdateIsAViolation) {
  // Two nodes each write and then keep reading their own value: one of the
  // updates is lost to the other node.
  ExpectVerdict({W(0, 1, 0, 10), W(1, 2, 0, 10), R(0, 1, 11, 12), R(1, 2, 11, 12)},
                Verdict::kViolation);
}

TEST(RegisterCheck, NewThenOldInversionIsAViolation) {
  // Both writes are done; once one reader saw 2 (so 1 came first), a later
  // reader cannot see 1. No simple witness covers this: only the search.
  const std::vector<Op> ops = {W(0, 1, 0, 10), W(1, 2, 0, 10), R(2, 2, 11, 12), R(3, 1, 13, 14)};
  EXPECT_TRUE(FindSimpleWitness(ops).empty());
  ExpectVerdict(ops, Verdict::kViolation);
}

TEST(RegisterCheck, FailedWriteMayTakeEffectLate) {
  Op failed = W(0, 1, 0, 1);
  failed.ok = false;
  ExpectVerdict({failed, R(1, 0, 5, 6), R(1, 1, 7, 8)}, Verdict::kLinearizable);
  ExpectVerdict({failed, R(1, 1, 5, 6), R(1, 0, 7, 8)}, Verdict::kViolation);
}

TEST(RegisterCheck, FailedReadIsIgnored) {
  Op failed = R(1, 42, 2, 3);
  failed.ok = false;
  EXPECT_EQ(CheckRegister({W(0, 1, 0, 1), failed}, kBudget).verdict, Verdict::kLinearizable);
}

TEST(RegisterCheck, TornReadIsAViolationOnItsOwn) {
  Op torn = R(1, 1, 2, 3);
  torn.torn = true;
  RegisterResult r = CheckRegister({W(0, 1, 0, 1), torn}, kBudget);
  EXPECT_EQ(r.verdict, Verdict::kViolation);
  EXPECT_EQ(r.linearizable, Verdict::kLinearizable);
  EXPECT_EQ(r.torn_reads, 1u);
  ASSERT_EQ(r.witness.size(), 1u);
  EXPECT_TRUE(r.witness[0].torn);
}

// A torn read is local when a write to the block from the reader's own
// node overlapped it: the local page cache's doing (ext4 tears the same way).
TEST(RegisterCheck, TornReadsOverlappedByALocalWriteAreCountedApart) {
  auto on = [](Op op, uint32_t node) {
    op.node = node;
    return op;
  };
  auto torn = [&](int64_t invoke, int64_t ret, uint32_t node) {
    Op op = on(R(1, 1, invoke, ret), node);
    op.torn = true;
    return op;
  };
  Op failed = on(W(3, 3, 40, 41), 1);
  failed.ok = false;  // never returns: overlaps every later read
  const std::vector<Op> ops = {
      on(W(0, 1, 0, 10), 0), on(W(2, 2, 20, 30), 1), failed,
      torn(5, 6, 0),    // inside node 0's write: local
      torn(5, 6, 1),    // node 1 wrote nothing then
      torn(10, 12, 0),  // starts as node 0's write returns: not overlapped
      torn(29, 31, 1),  // overlaps node 1's write by its last nanosecond
      torn(35, 36, 1),  // between node 1's writes
      torn(50, 51, 1),  // after node 1's failed write was invoked
  };
  const RegisterResult r = CheckRegister(ops, kBudget);
  EXPECT_EQ(r.torn_reads, 6u);
  EXPECT_EQ(r.local_torn_reads, 3u);
  EXPECT_EQ(r.verdict, Verdict::kViolation);
  // The witness is the first tear no local write explains.
  ASSERT_EQ(r.witness.size(), 1u);
  EXPECT_EQ(r.witness[0].node, 1u);
  EXPECT_EQ(r.witness[0].invoke_ns, 5);
}

TEST(RegisterCheck, OnlyLocalTearsStillViolate) {
  Op torn = R(1, 1, 2, 3);
  torn.torn = true;
  const RegisterResult r = CheckRegister({W(0, 1, 0, 5), torn}, kBudget);
  EXPECT_EQ(r.local_torn_reads, 1u);
  EXPECT_EQ(r.verdict, Verdict::kViolation);
  ASSERT_EQ(r.witness.size(), 1u);
  EXPECT_TRUE(r.witness[0].torn);
}

TEST(RegisterCheck, StaleReadIsReportedBeforeATornOne) {
  Op torn = R(1, 1, 2, 3);
  torn.torn = true;
  RegisterResult r = CheckRegister({W(0, 1, 0, 1), torn, R(1, 0, 4, 5)}, kBudget);
  EXPECT_EQ(r.verdict, Verdict::kViolation);
  EXPECT_EQ(r.linearizable, Verdict::kViolation);
  EXPECT_EQ(r.torn_reads, 1u);
  ASSERT_EQ(r.witness.size(), 2u);
  EXPECT_FALSE(r.witness[1].torn);
}

TEST(RegisterCheck, DuplicateValuesAreLeftToTheSearch) {
  // The simple witnesses assume unique values; with a repeated value the
  // search still decides correctly.
  const std::vector<Op> ops = {W(0, 1, 0, 1), W(0, 2, 2, 3), W(0, 1, 4, 5), R(1, 1, 6, 7)};
  EXPECT_FALSE(WritesAreUnique(ops));
  EXPECT_EQ(CheckRegister(ops, kBudget).verdict, Verdict::kLinearizable);
}

TEST(RegisterCheck, ExhaustedBudgetIsUnknownNotAPass) {
  // Many overlapping writes and a final impossible read: the search must try
  // many orders before it can conclude anything.
  std::vector<Op> ops;
  for (uint32_t p = 0; p < 16; ++p) ops.push_back(W(p, p + 1, 0, 100));
  ops.push_back(R(99, 0, 0, 200));
  ops.push_back(R(99, 1000, 0, 200));
  EXPECT_EQ(SearchRegister(ops, 50).verdict, Verdict::kUnknown);
}

// A sequential history of `n` writes each followed by a read of its value.
std::vector<Op> LongSequentialHistory(int n) {
  std::vector<Op> ops;
  for (int i = 0; i < n; ++i) {
    ops.push_back(W(i % 3, i + 1, 10 * i, 10 * i + 3));
    ops.push_back(R(3 + i % 2, i + 1, 10 * i + 5, 10 * i + 8));
  }
  return ops;
}

TEST(Shrink, StaleReadBuriedInAThousandOpsShrinksToItsWitness) {
  std::vector<Op> ops = LongSequentialHistory(500);
  ops[701].value = 300;  // read at i = 350 sees the value written at i = 299
  RegisterResult r = CheckRegister(ops, kBudget);
  ASSERT_EQ(r.verdict, Verdict::kViolation);
  EXPECT_LE(r.witness.size(), 3u);
  EXPECT_TRUE(IsViolation(r.witness, kBudget));
}

TEST(Shrink, SearchOnlyViolationBuriedInAThousandOpsShrinksToFourOps) {
  std::vector<Op> ops = LongSequentialHistory(250);
  const int64_t t = 10 * 250;
  const std::vector<Op> bad = {W(0, 1001, t, t + 10), W(1, 1002, t, t + 10),
                               R(2, 1002, t + 11, t + 12), R(3, 1001, t + 13, t + 14)};
  ops.insert(ops.end(), bad.begin(), bad.end());
  for (int i = 0; i < 496; ++i) {
    ops.push_back(R(4, 1001, t + 20 + 2 * i, t + 21 + 2 * i));
  }
  ASSERT_TRUE(FindSimpleWitness(ops).empty());
  RegisterResult r = CheckRegister(ops, kBudget);
  ASSERT_EQ(r.verdict, Verdict::kViolation);
  EXPECT_EQ(r.witness.size(), 4u);
  EXPECT_TRUE(IsViolation(r.witness, kBudget));
  // 1-minimal: dropping any one operation (and the reads of a dropped
  // write) leaves a linearizable history.
  for (size_t i = 0; i < r.witness.size(); ++i) {
    std::vector<Op> rest = r.witness;
    const Op gone = rest[i];
    rest.erase(rest.begin() + i);
    if (gone.is_write()) {
      std::erase_if(rest, [&](const Op& op) { return op.value == gone.value; });
    }
    EXPECT_FALSE(IsViolation(rest, kBudget)) << "without op " << i;
  }
}

// Simulates an atomic register: each operation takes effect at a random
// instant between its invocation and return, so the history is linearizable
// by construction. Processes run one operation at a time.
std::vector<Op> SimulateAtomicRegister(std::mt19937_64& rng, int processes, int ops_per_process) {
  struct Pending {
    Op op;
    int64_t effect;
  };
  std::vector<Pending> all;
  uint64_t next_value = 1;
  for (int p = 0; p < processes; ++p) {
    int64_t t = static_cast<int64_t>(rng() % 50);
    for (int i = 0; i < ops_per_process; ++i) {
      const int64_t invoke = t + static_cast<int64_t>(rng() % 20);
      const int64_t ret = invoke + 1 + static_cast<int64_t>(rng() % 60);
      const int64_t effect = invoke + static_cast<int64_t>(rng() % (ret - invoke + 1));
      Op op = rng() % 2 ? W(p, next_value++, invoke, ret) : R(p, 0, invoke, ret);
      all.push_back({op, effect});
      t = ret + 1;
    }
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Pending& a, const Pending& b) { return a.effect < b.effect; });
  uint64_t value = 0;
  std::vector<Op> ops;
  for (Pending& p : all) {
    if (p.op.is_write()) {
      value = p.op.value;
    } else {
      p.op.value = value;
    }
    ops.push_back(p.op);
  }
  std::shuffle(ops.begin(), ops.end(), rng);  // the checker must not rely on order
  return ops;
}

TEST(RegisterCheckRandomized, AtomicRegisterHistoriesAreLinearizable) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    const std::vector<Op> ops = SimulateAtomicRegister(rng, 2 + seed % 6, 60);
    ASSERT_EQ(SearchRegister(ops, kBudget).verdict, Verdict::kLinearizable) << "seed " << seed;
    ASSERT_EQ(CheckRegister(ops, kBudget).verdict, Verdict::kLinearizable) << "seed " << seed;
  }
}

TEST(RegisterCheckRandomized, InjectedStaleReadIsFlagged) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<Op> ops = SimulateAtomicRegister(rng, 2 + seed % 6, 60);
    // A read, after everything else, of a value that was overwritten by a
    // write invoked after it returned.
    int64_t end = 0;
    for (const Op& op : ops) end = std::max(end, op.return_ns);
    const Op* stale = nullptr;
    for (const Op& a : ops) {
      for (const Op& b : ops) {
        if (a.is_write() && b.is_write() && a.return_ns < b.invoke_ns) stale = &a;
      }
      if (stale) break;
    }
    ASSERT_NE(stale, nullptr) << "seed " << seed;
    ops.push_back(R(100, stale->value, end + 1, end + 2));
    ASSERT_EQ(SearchRegister(ops, kBudget).verdict, Verdict::kViolation) << "seed " << seed;
    RegisterResult r = CheckRegister(ops, kBudget);
    ASSERT_EQ(r.verdict, Verdict::kViolation) << "seed " << seed;
    EXPECT_LE(r.witness.size(), 3u) << "seed " << seed;
  }
}

// Exhaustive oracle for tiny histories: tries every order that respects
// real time (an op may go next unless another remaining op returned before
// it was invoked).
bool BruteForceLinearizable(const std::vector<Op>& ops, std::vector<bool>& done, uint64_t state) {
  bool all_done = true;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (done[i]) continue;
    all_done = false;
    bool minimal = true;
    for (size_t j = 0; j < ops.size() && minimal; ++j) {
      minimal = done[j] || !ops[j].ok || ops[j].return_ns >= ops[i].invoke_ns;
    }
    if (!minimal || (!ops[i].is_write() && ops[i].value != state)) continue;
    done[i] = true;
    const bool ok = BruteForceLinearizable(ops, done, ops[i].is_write() ? ops[i].value : state);
    done[i] = false;
    if (ok) return true;
  }
  return all_done;
}

bool BruteForceLinearizable(const std::vector<Op>& ops) {
  std::vector<bool> done(ops.size(), false);
  return BruteForceLinearizable(ops, done, 0);
}

TEST(RegisterCheckRandomized, AgreesWithBruteForceOnTinyHistories) {
  // Small time ranges make ties (equal invoke/return times) common.
  std::mt19937_64 rng(7);
  int violations = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    const int n = 1 + static_cast<int>(rng() % 7);
    std::vector<Op> ops;
    uint64_t next_value = 1;
    for (int i = 0; i < n; ++i) {
      const int64_t invoke = static_cast<int64_t>(rng() % 12);
      const int64_t ret = invoke + static_cast<int64_t>(rng() % 6);
      if (rng() % 2) {
        ops.push_back(W(i, next_value++, invoke, ret));
        ops.back().ok = rng() % 8 != 0;
      } else {
        ops.push_back(R(i, rng() % 4, invoke, ret));
      }
    }
    const bool want = BruteForceLinearizable(ops);
    violations += !want;
    ASSERT_EQ(SearchRegister(ops, kBudget).verdict,
              want ? Verdict::kLinearizable : Verdict::kViolation)
        << "iteration " << iter;
    std::vector<size_t> simple = FindSimpleWitness(ops);
    if (!simple.empty()) {
      ASSERT_FALSE(want) << "unsound simple witness, iteration " << iter;
      std::vector<Op> sub;
      for (size_t i : simple) sub.push_back(ops[i]);
      ASSERT_FALSE(BruteForceLinearizable(sub)) << "iteration " << iter;
    }
    const RegisterResult r = CheckRegister(ops, kBudget);
    ASSERT_EQ(r.verdict, want ? Verdict::kLinearizable : Verdict::kViolation);
    if (!want) {
      ASSERT_FALSE(BruteForceLinearizable(r.witness)) << "iteration " << iter;
    }
  }
  EXPECT_GT(violations, 500);  // the generator exercises both outcomes
  EXPECT_LT(violations, 4500);
}

}  // namespace
}  // namespace dfuse::checker
