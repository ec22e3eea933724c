// A small set of disjoint byte ranges within one cache page.
#ifndef DFUSE_IMPL_COMMON_RANGE_SET_H_
#define DFUSE_IMPL_COMMON_RANGE_SET_H_

#include <cstdint>
#include <utility>
#include <vector>

namespace dfuse {

// Half-open ranges [lo, hi), kept sorted, disjoint and non-adjacent. Pages
// almost always hold zero or one range, so a vector beats a tree.
class RangeSet {
 public:
  using Range = std::pair<uint32_t, uint32_t>;

  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }
  void Clear() { ranges_.clear(); }

  void Add(uint32_t lo, uint32_t hi) {
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
  void TrimAbove(uint32_t limit) {
    std::vector<Range> out;
    for (const Range& r : ranges_) {
      if (r.first >= limit) break;
      out.emplace_back(r.first, std::min(r.second, limit));
    }
    ranges_ = std::move(out);
  }

  bool Covers(uint32_t lo, uint32_t hi) const {
    for (const Range& r : ranges_) {
      if (r.first <= lo && hi <= r.second) return true;
    }
    return lo >= hi;
  }

  uint32_t End() const { return ranges_.empty() ? 0 : ranges_.back().second; }

  // The complement of this set within [0, limit).
  std::vector<Range> Gaps(uint32_t limit) const {
    std::vector<Range> gaps;
    uint32_t pos = 0;
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

}  // namespace dfuse

#endif  // DFUSE_IMPL_COMMON_RANGE_SET_H_
