#include "util/extent_set.h"

#include <algorithm>

namespace dfuse {

void ExtentSet::Add(uint64_t start, uint64_t end) {
  if (end <= start) return;
  // The first range that ends at or after `start` is the first one that
  // may overlap or touch [start, end).
  auto first = std::lower_bound(ranges_.begin(), ranges_.end(), start,
                                [](const Range& r, uint64_t s) { return r.end < s; });
  auto last = first;
  while (last != ranges_.end() && last->start <= end) {
    start = std::min(start, last->start);
    end = std::max(end, last->end);
    ++last;
  }
  first = ranges_.erase(first, last);
  ranges_.insert(first, Range{start, end});
  if (ranges_.size() <= max_ranges_) return;
  // One range too many: close the smallest gap.
  size_t best = 0;
  for (size_t i = 1; i + 1 < ranges_.size(); i++) {
    if (ranges_[i + 1].start - ranges_[i].end < ranges_[best + 1].start - ranges_[best].end) {
      best = i;
    }
  }
  ranges_[best].end = ranges_[best + 1].end;
  ranges_.erase(ranges_.begin() + static_cast<std::ptrdiff_t>(best) + 1);
}

}  // namespace dfuse
