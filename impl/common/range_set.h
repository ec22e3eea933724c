// A small set of disjoint byte ranges: within one cache page (RangeSet), or
// within a file (FileRangeSet).
#ifndef DFUSE_IMPL_COMMON_RANGE_SET_H_
#define DFUSE_IMPL_COMMON_RANGE_SET_H_

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace dfuse {

// Half-open ranges [lo, hi), kept sorted, disjoint and non-adjacent. A set
// almost always holds zero or one range, so a vector beats a tree.
template <typename T>
class BasicRangeSet {
 public:
  using Range = std::pair<T, T>;

  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }
  void Clear() { ranges_.clear(); }

  void Add(T lo, T hi) {
    if (lo >= hi) return;
    std::vector<Range> out;
    out.reserve(ranges_.size() + 1);
    bool placed = false;
    for (const Range& r : ranges_) {
      if (r.second < lo) {
        out.push_back(r);
      } else if (r.first > hi) {
        if (!placed) out.emplace_back(lo, hi), placed = true;
        out.push_back(r);
      } else {  // overlapping or adjacent: absorb
        lo = std::min(lo, r.first);
        hi = std::max(hi, r.second);
      }
    }
    if (!placed) out.emplace_back(lo, hi);
    ranges_ = std::move(out);
  }

  // Removes every byte at or above `limit`.
  void TrimAbove(T limit) {
    std::vector<Range> out;
    for (const Range& r : ranges_) {
      if (r.first >= limit) break;
      out.emplace_back(r.first, std::min(r.second, limit));
    }
    ranges_ = std::move(out);
  }

  bool Covers(T lo, T hi) const {
    for (const Range& r : ranges_) {
      if (r.first <= lo && hi <= r.second) return true;
    }
    return lo >= hi;
  }

  T End() const { return ranges_.empty() ? 0 : ranges_.back().second; }

  // The parts of this set within [lo, hi).
  std::vector<Range> Overlap(T lo, T hi) const {
    std::vector<Range> out;
    for (const Range& r : ranges_) {
      const T a = std::max(r.first, lo);
      const T b = std::min(r.second, hi);
      if (a < b) out.emplace_back(a, b);
    }
    return out;
  }

  // The complement of this set within [0, limit).
  std::vector<Range> Gaps(T limit) const {
    std::vector<Range> gaps;
    T pos = 0;
    for (const Range& r : ranges_) {
      if (r.first > pos) gaps.emplace_back(pos, std::min(r.first, limit));
      pos = std::max(pos, r.second);
      if (pos >= limit) break;
    }
    if (pos < limit) gaps.emplace_back(pos, limit);
    return gaps;
  }

 private:
  std::vector<Range> ranges_;
};

using RangeSet = BasicRangeSet<uint32_t>;
using FileRangeSet = BasicRangeSet<uint64_t>;

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_RANGE_SET_H_
