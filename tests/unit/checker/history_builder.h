// Hand-made histories for the checker tests: times are small integers.
#ifndef DFUSE_TESTS_UNIT_CHECKER_HISTORY_BUILDER_H_
#define DFUSE_TESTS_UNIT_CHECKER_HISTORY_BUILDER_H_

#include <cstdint>

#include "workloads/consistency/history.h"

namespace dfuse::checker::testing {

inline Op W(uint32_t process, uint64_t value, int64_t invoke, int64_t ret, uint32_t block = 0) {
  Op op;
  op.process = process;
  op.kind = OpKind::kWrite;
  op.block = block;
  op.value = value;
  op.invoke_ns = invoke;
  op.return_ns = ret;
  return op;
}

inline Op R(uint32_t process, uint64_t value, int64_t invoke, int64_t ret, uint32_t block = 0) {
  Op op = W(process, value, invoke, ret, block);
  op.kind = OpKind::kRead;
  return op;
}

}  // namespace dfuse::checker::testing

#endif  // DFUSE_TESTS_UNIT_CHECKER_HISTORY_BUILDER_H_
