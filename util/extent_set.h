// A bounded set of byte ranges of one file: the bytes a writer changed
// (storage/fencing.h), or the bytes a node must drop from the pages it kept
// (impl/dfuse/kernel_leases.h).
//
// The ranges are kept sorted, disjoint and merged when they overlap or
// touch. Past `max_ranges`, the two ranges with the smallest gap between
// them are merged into one: the set may then cover bytes that were never
// added, never the other way round, which is the safe direction for both
// uses (a few more bytes dropped).
#ifndef DFUSE_UTIL_EXTENT_SET_H_
#define DFUSE_UTIL_EXTENT_SET_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dfuse {

class ExtentSet {
 public:
  // Bytes [start, end). kToEnd as an end: to the end of the file, whatever
  // its size.
  struct Range {
    uint64_t start;
    uint64_t end;
    bool operator==(const Range&) const = default;
  };
  static constexpr uint64_t kToEnd = UINT64_MAX;

  explicit ExtentSet(size_t max_ranges) : max_ranges_(max_ranges < 1 ? 1 : max_ranges) {}

  // Adds [start, end); an empty range (end <= start) adds nothing.
  void Add(uint64_t start, uint64_t end);
  void Clear() { ranges_.clear(); }

  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }

 private:
  size_t max_ranges_;
  std::vector<Range> ranges_;
};

}  // namespace dfuse

#endif  // DFUSE_UTIL_EXTENT_SET_H_
