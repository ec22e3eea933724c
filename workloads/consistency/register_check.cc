#include "workloads/consistency/register_check.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace dfuse::checker {

namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// A failed write may take effect at any time after its invocation.
int64_t EffectiveReturn(const Op& op) { return op.ok ? op.return_ns : kNever; }

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

// The set of linearized operations, ids being positions in invocation order.
// Any linearized op was invoked before the earliest return of a pending op,
// so apart from the prefix [0, base) the set holds only a handful of ids
// that overlap the oldest pending op in time. Storing it as (base, those
// ids) keeps cache keys small even for registers with 100k operations.
class LinearizedSet {
 public:
  static constexpr uint32_t kInserted = std::numeric_limits<uint32_t>::max();

  // Returns what Remove needs to undo this Add.
  uint32_t Add(uint32_t id) {
    if (id != base_) {
      above_.insert(std::lower_bound(above_.begin(), above_.end(), id), id);
      return kInserted;
    }
    ++base_;
    uint32_t absorbed = 0;
    while (absorbed < above_.size() && above_[absorbed] == base_) {
      ++absorbed;
      ++base_;
    }
    above_.erase(above_.begin(), above_.begin() + absorbed);
    return absorbed;
  }

  // Undoes the most recent Add(id) still in effect (the search backtracks in
  // stack order).
  void Remove(uint32_t id, uint32_t undo) {
    if (undo == kInserted) {
      above_.erase(std::lower_bound(above_.begin(), above_.end(), id));
      return;
    }
    base_ = id;
    std::vector<uint32_t> back(undo);
    std::iota(back.begin(), back.end(), id + 1);
    above_.insert(above_.begin(), back.begin(), back.end());
  }

  uint32_t base() const { return base_; }
  const std::vector<uint32_t>& above() const { return above_; }

 private:
  uint32_t base_ = 0;
  std::vector<uint32_t> above_;  // sorted, all > base_
};

struct CacheKey {
  uint64_t state;
  uint32_t base;
  std::vector<uint32_t> above;
  bool operator==(const CacheKey&) const = default;
};

struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const {
    uint64_t h = Mix(k.state, k.base);
    for (uint32_t id : k.above) h = Mix(h, id);
    return h;
  }
};

// Checks `ops`, adding the search steps used to `*spent`.
bool IsViolationCounted(const std::vector<Op>& ops, uint64_t step_budget, uint64_t* spent) {
  if (!FindSimpleWitness(ops).empty()) return true;
  SearchResult r = SearchRegister(ops, step_budget);
  *spent += r.steps;
  return r.verdict == Verdict::kViolation;
}

// Drops the reads whose value was written in the original history but whose
// write is no longer in `ops` (the closure rule, see Shrink).
std::vector<Op> ReadClosed(std::vector<Op> ops, const std::unordered_set<uint64_t>& all_writes) {
  std::unordered_set<uint64_t> present;
  for (const Op& op : ops) {
    if (op.is_write()) present.insert(op.value);
  }
  std::erase_if(ops, [&](const Op& op) {
    return !op.is_write() && all_writes.contains(op.value) && !present.contains(op.value);
  });
  return ops;
}

}  // namespace

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kLinearizable:
      return "ok";
    case Verdict::kViolation:
      return "violation";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

SearchResult SearchRegister(const std::vector<Op>& input, uint64_t step_budget) {
  const uint32_t n = static_cast<uint32_t>(input.size());
  if (n == 0) return {};

  // Ids follow invocation order (see LinearizedSet).
  std::vector<const Op*> ops(n);
  for (uint32_t i = 0; i < n; ++i) ops[i] = &input[i];
  std::stable_sort(ops.begin(), ops.end(),
                   [](const Op* a, const Op* b) { return a->invoke_ns < b->invoke_ns; });

  // Node 0 is the list head; node 1 + 2*id is id's call, 2 + 2*id its return.
  // At equal times calls sort first, so such operations count as concurrent.
  struct Event {
    int64_t time;
    bool is_return;
    uint32_t id;
  };
  std::vector<Event> events;
  events.reserve(2 * n);
  for (uint32_t id = 0; id < n; ++id) {
    events.push_back({ops[id]->invoke_ns, false, id});
    events.push_back({EffectiveReturn(*ops[id]), true, id});
  }
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.time != b.time) return a.time < b.time;
    if (a.is_return != b.is_return) return !a.is_return;
    return a.id < b.id;
  });
  auto node_of = [](const Event& e) { return static_cast<int32_t>(1 + 2 * e.id + e.is_return); };
  std::vector<int32_t> next(2 * n + 1, -1), prev(2 * n + 1, -1);
  int32_t last = 0;
  for (const Event& e : events) {
    int32_t node = node_of(e);
    next[last] = node;
    prev[node] = last;
    last = node;
  }
  auto is_call = [](int32_t node) { return node % 2 == 1; };
  auto id_of = [](int32_t node) { return static_cast<uint32_t>((node - 1) / 2); };
  auto unlink = [&](int32_t node) {
    next[prev[node]] = next[node];
    if (next[node] != -1) prev[next[node]] = prev[node];
  };
  auto relink = [&](int32_t node) {
    next[prev[node]] = node;
    if (next[node] != -1) prev[next[node]] = node;
  };
  // Lifting a call removes it and its return; relinking in reverse order
  // restores the list exactly because backtracking is LIFO.
  auto lift = [&](int32_t call) {
    unlink(call);
    unlink(call + 1);
  };
  auto unlift = [&](int32_t call) {
    relink(call + 1);
    relink(call);
  };

  struct Frame {
    int32_t call;
    uint64_t state;
    uint32_t undo;
  };
  std::vector<Frame> stack;
  std::unordered_set<CacheKey, CacheKeyHash> cache;
  LinearizedSet linearized;
  uint64_t state = 0;
  uint64_t steps = 0;
  int32_t entry = next[0];
  while (next[0] != -1) {
    if (++steps > step_budget) return {Verdict::kUnknown, steps};
    if (is_call(entry)) {
      const uint32_t id = id_of(entry);
      const Op& op = *ops[id];
      if (op.is_write() || op.value == state) {
        const uint64_t new_state = op.is_write() ? op.value : state;
        const uint32_t undo = linearized.Add(id);
        if (cache.insert({new_state, linearized.base(), linearized.above()}).second) {
          stack.push_back({entry, state, undo});
          state = new_state;
          lift(entry);
          entry = next[0];
          continue;
        }
        linearized.Remove(id, undo);
      }
      entry = next[entry];
    } else {
      // A pending operation returned before it could be linearized.
      if (stack.empty()) return {Verdict::kViolation, steps};
      const Frame f = stack.back();
      stack.pop_back();
      linearized.Remove(id_of(f.call), f.undo);
      state = f.state;
      unlift(f.call);
      entry = next[f.call];
    }
  }
  return {Verdict::kLinearizable, steps};
}

bool WritesAreUnique(const std::vector<Op>& ops) {
  std::unordered_set<uint64_t> seen;
  for (const Op& op : ops) {
    if (op.is_write() && (op.value == 0 || !seen.insert(op.value).second)) return false;
  }
  return true;
}

std::vector<size_t> FindSimpleWitness(const std::vector<Op>& ops) {
  std::unordered_map<uint64_t, size_t> write_of;
  std::vector<size_t> writes;  // by effective return time
  std::vector<size_t> reads;   // by invocation time
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].is_write()) {
      write_of[ops[i].value] = i;
      writes.push_back(i);
    } else {
      reads.push_back(i);
    }
  }
  std::sort(writes.begin(), writes.end(),
            [&](size_t a, size_t b) { return EffectiveReturn(ops[a]) < EffectiveReturn(ops[b]); });
  std::sort(reads.begin(), reads.end(),
            [&](size_t a, size_t b) { return ops[a].invoke_ns < ops[b].invoke_ns; });
  // latest[k]: of writes[0..k], the one invoked last.
  std::vector<size_t> latest(writes.size());
  for (size_t k = 0; k < writes.size(); ++k) {
    latest[k] = writes[k];
    if (k > 0 && ops[latest[k - 1]].invoke_ns > ops[writes[k]].invoke_ns) {
      latest[k] = latest[k - 1];
    }
  }
  for (size_t r : reads) {
    const Op& read = ops[r];
    // Writes that returned strictly before the read was invoked.
    const size_t before = static_cast<size_t>(
        std::partition_point(writes.begin(), writes.end(),
                             [&](size_t w) { return EffectiveReturn(ops[w]) < read.invoke_ns; }) -
        writes.begin());
    if (read.value == 0) {
      if (before > 0) return {writes[0], r};
      continue;
    }
    auto it = write_of.find(read.value);
    if (it == write_of.end()) return {r};
    const Op& write = ops[it->second];
    if (write.invoke_ns > read.return_ns) return {it->second, r};
    if (before > 0 && ops[latest[before - 1]].invoke_ns > EffectiveReturn(write)) {
      return {it->second, latest[before - 1], r};
    }
  }
  return {};
}

bool IsViolation(const std::vector<Op>& ops, uint64_t step_budget) {
  uint64_t spent = 0;
  return IsViolationCounted(ops, step_budget, &spent);
}

std::vector<Op> Shrink(std::vector<Op> ops, uint64_t step_budget, uint64_t total_budget) {
  std::unordered_set<uint64_t> all_writes;
  for (const Op& op : ops) {
    if (op.is_write()) all_writes.insert(op.value);
  }
  std::stable_sort(ops.begin(), ops.end(),
                   [](const Op& a, const Op& b) { return a.invoke_ns < b.invoke_ns; });
  uint64_t spent = 0;
  auto violates = [&](const std::vector<Op>& candidate) {
    return !candidate.empty() && spent <= total_budget &&
           IsViolationCounted(candidate, step_budget, &spent);
  };
  auto prefix = [&](size_t len) {
    return ReadClosed(std::vector<Op>(ops.begin(), ops.begin() + len), all_writes);
  };

  // Most violations sit in a short stretch of a long history: first cut the
  // history after the shortest violating prefix (binary search; a prefix is
  // kept only once it has been seen to violate).
  size_t lo = 1, hi = ops.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (violates(prefix(mid))) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  ops = prefix(hi);

  // ddmin (Zeller): try removing each of `chunks` pieces; on success keep
  // the rest and coarsen, otherwise refine, until single operations fail.
  size_t chunks = 2;
  while (ops.size() >= 2) {
    const size_t size = (ops.size() + chunks - 1) / chunks;
    bool reduced = false;
    for (size_t start = 0; start < ops.size(); start += size) {
      std::vector<Op> candidate(ops.begin(), ops.begin() + start);
      candidate.insert(candidate.end(), ops.begin() + std::min(start + size, ops.size()),
                       ops.end());
      candidate = ReadClosed(std::move(candidate), all_writes);
      if (violates(candidate)) {
        ops = std::move(candidate);
        chunks = std::max<size_t>(chunks - 1, 2);
        reduced = true;
        break;
      }
    }
    if (spent > total_budget) break;
    if (!reduced) {
      if (chunks >= ops.size()) break;
      chunks = std::min(chunks * 2, ops.size());
    }
  }
  return ops;
}

namespace {

// Answers "did a write from this read's node overlap it in time?" for one
// register in O(log n): per node, writes by invocation time with the latest
// return among each prefix (a failed write may take effect any time after
// its invocation, so it never returns).
class LocalWrites {
 public:
  explicit LocalWrites(const std::vector<Op>& ops) {
    for (const Op& op : ops) {
      if (!op.is_write()) continue;
      by_node_[op.node].push_back(
          {op.invoke_ns, op.ok ? op.return_ns : std::numeric_limits<int64_t>::max()});
    }
    for (auto& [node, writes] : by_node_) {
      std::sort(writes.begin(), writes.end());
      for (size_t i = 1; i < writes.size(); ++i) {
        writes[i].second = std::max(writes[i].second, writes[i - 1].second);
      }
    }
  }

  bool Overlap(const Op& read) const {
    auto it = by_node_.find(read.node);
    if (it == by_node_.end()) return false;
    const auto& writes = it->second;
    // The writes invoked before the read returned; one of them overlaps it
    // if the latest of their returns is after the read's invocation.
    const auto end =
        std::lower_bound(writes.begin(), writes.end(), std::make_pair(read.return_ns, int64_t{0}),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
    return end != writes.begin() && std::prev(end)->second > read.invoke_ns;
  }

 private:
  // node -> (invoke_ns, latest return_ns of this and every earlier write)
  std::unordered_map<uint32_t, std::vector<std::pair<int64_t, int64_t>>> by_node_;
};

}  // namespace

RegisterResult CheckRegister(const std::vector<Op>& recorded, uint64_t step_budget) {
  RegisterResult result;
  std::vector<Op> ops;
  ops.reserve(recorded.size());
  const Op* first_torn = nullptr;
  const Op* first_unexplained = nullptr;
  std::optional<LocalWrites> local_writes;  // built at the first torn read
  for (const Op& op : recorded) {
    if (op.torn) {
      if (result.torn_reads++ == 0) first_torn = &op;
      if (!local_writes) local_writes.emplace(recorded);
      if (local_writes->Overlap(op)) {
        ++result.local_torn_reads;
      } else if (first_unexplained == nullptr) {
        first_unexplained = &op;
      }
    } else if (op.is_write() || op.ok) {
      ops.push_back(op);
    }
  }
  // The other operations are checked even when a read was torn: whether the
  // register is also stale says more about the bug than the tear does.
  result.linearizable = Verdict::kViolation;
  const bool unique = WritesAreUnique(ops);
  std::vector<size_t> simple;
  if (unique) simple = FindSimpleWitness(ops);
  if (!simple.empty()) {
    for (size_t i : simple) result.witness.push_back(ops[i]);
    result.witness = Shrink(std::move(result.witness), step_budget, step_budget);
  } else {
    SearchResult search = SearchRegister(ops, step_budget);
    result.linearizable = search.verdict;
    result.steps = search.steps;
    if (search.verdict == Verdict::kViolation) {
      // Without unique values a removed write may be what a kept read saw,
      // so only the whole history is a sound witness.
      result.witness = unique ? Shrink(std::move(ops), step_budget, 20 * step_budget) : ops;
    }
  }
  result.verdict = result.linearizable;
  if (first_torn != nullptr && result.verdict != Verdict::kViolation) {
    result.verdict = Verdict::kViolation;
    result.witness = {first_unexplained != nullptr ? *first_unexplained : *first_torn};
  }
  return result;
}

}  // namespace dfuse::checker
