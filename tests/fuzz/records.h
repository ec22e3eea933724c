// The input format of the protocol-buffer fuzz targets (make_seeds.py writes
// their seeds in it): records of [selector byte][length byte][that many
// bytes, a message in the wire format], the last one cut short by the end of
// the input.
#ifndef DFUSE_TESTS_FUZZ_RECORDS_H_
#define DFUSE_TESTS_FUZZ_RECORDS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dfuse::fuzz {

// Calls fn(selector, bytes) for each record of the input, at most `max`.
template <typename Fn>
void ForEachRecord(const uint8_t* data, size_t size, size_t max, Fn fn) {
  for (size_t n = 0; size >= 2 && n < max; n++) {
    const uint8_t selector = data[0];
    const size_t len = std::min<size_t>(data[1], size - 2);
    fn(selector, std::string_view(reinterpret_cast<const char*>(data + 2), len));
    data += 2 + len;
    size -= 2 + len;
  }
}

}  // namespace dfuse::fuzz

#endif  // DFUSE_TESTS_FUZZ_RECORDS_H_
