#include "workloads/consistency/merge.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace dfuse::checker {

ClockBound ParseClockBound(const std::string& text) {
  const size_t colon = text.find(':');
  ClockBound b;
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    size_t used = 0;
    b.min_offset_ns = std::stoll(text.substr(0, colon), &used);
    if (used != colon) throw std::invalid_argument("trailing text");
    const std::string max = text.substr(colon + 1);
    b.max_offset_ns = std::stoll(max, &used);
    if (used != max.size()) throw std::invalid_argument("trailing text");
  } catch (const std::logic_error&) {
    throw std::runtime_error("clock offset \"" + text + "\" is not MIN:MAX in integer nanoseconds");
  }
  if (b.min_offset_ns > b.max_offset_ns) {
    throw std::runtime_error("clock offset \"" + text + "\": MIN is greater than MAX");
  }
  return b;
}

std::vector<Op> MergeHistories(std::vector<std::vector<Op>> parts,
                               const std::vector<ClockBound>& bounds) {
  if (!bounds.empty() && bounds.size() != parts.size()) {
    throw std::runtime_error(std::to_string(parts.size()) + " histories but " +
                             std::to_string(bounds.size()) +
                             " clock offsets: give one per history, or none");
  }
  std::map<uint32_t, size_t> part_of_process;
  std::vector<Op> merged;
  for (size_t i = 0; i < parts.size(); ++i) {
    const ClockBound bound = bounds.empty() ? ClockBound{} : bounds[i];
    for (Op& op : parts[i]) {
      const auto [it, inserted] = part_of_process.emplace(op.process, i);
      if (!inserted && it->second != i) {
        throw std::runtime_error("process " + std::to_string(op.process) + " is in histories " +
                                 std::to_string(it->second + 1) + " and " + std::to_string(i + 1) +
                                 ": each host's run needs its own --first-node");
      }
      op.invoke_ns -= bound.max_offset_ns;
      op.return_ns -= bound.min_offset_ns;
      merged.push_back(op);
    }
  }
  std::stable_sort(merged.begin(), merged.end(),
                   [](const Op& a, const Op& b) { return a.invoke_ns < b.invoke_ns; });
  return merged;
}

}  // namespace dfuse::checker
