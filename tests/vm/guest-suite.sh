#!/usr/bin/env bash
# The VM test suite (runs in the guest, started by tools/dfuse-vm from the
# repository root), every mode on dfuse.ko: dfuse.ko's kernel-lease tests,
# the consistency checker, the directory-lease, namespace and user-mapping
# tests for all three modes; then the multi-node tests and the long runs
# (differential, crash durability, the failed-revoke fault test) for dfuse
# mode only, since the host runs them for the other two modes on stock
# FUSE. Operation counts are scaled down to keep CI within its hour:
# software emulation is 5-30x slower than the host, and the checker's long
# VM runs are recorded benchmarks (results/checker-dfuse-vm-100k). Ends
# with pytest's own summaries; fails if any run failed.
#   tests/vm/guest-suite.sh [PYTEST_ARGS...]   (default: the whole suite)
set -u
sysctl -qw kernel.hung_task_timeout_secs=30 2>/dev/null || true
export DFUSE_BUILD_DIR=${DFUSE_BUILD_DIR:-$PWD/build}
export DFUSE_TEST_MODES=dfuse,writethrough,weakwriteback
export DFUSE_FUSE_DEVICE=/dev/dfuse
export DFUSE_CLUSTER_TIMEOUT=120
export DFUSE_VM_CHECK_OPS=${DFUSE_VM_CHECK_OPS:-4000}
export DFUSE_REVOKE_LOAD_SECONDS=${DFUSE_REVOKE_LOAD_SECONDS:-60}
export DFUSE_DIFF_OPS=${DFUSE_DIFF_OPS:-1000}
export PYTHONDONTWRITEBYTECODE=1
# The guest's /tmp goes with the VM: a failed test's daemon logs are copied
# to the build tree (shared with the host) to be read afterwards.
export DFUSE_KEEP_FAILED_LOGS=${DFUSE_KEEP_FAILED_LOGS:-$DFUSE_BUILD_DIR/vm-failed-logs}
pytest() {
	/usr/bin/python3 -m pytest -v -rs --durations=15 -p no:cacheprovider "$@"
}
if [ $# -gt 0 ]; then
	pytest "$@"
	exit
fi
# One pytest run per file: each prints its failures as soon as it ends, so
# a guest that runs out of time later still shows them on the console.
failed=0
rm -rf "$DFUSE_KEEP_FAILED_LOGS"
for f in test_kernel_leases.py test_dir_leases.py test_namespace.py test_squash.py; do
	pytest "tests/integration/$f" || failed=1
done
# The multi-node and long tests for dfuse mode only: the host runs them for
# the other two modes on stock FUSE (and the sanitizer tree the multi-node
# ones again), and the files above run those modes on dfuse.ko. Emulated,
# the other modes' multi-node tests were about half of the file's 343 s on
# an idle machine.
for t in test_multinode.py test_differential.py test_durability.py \
	"test_faults.py::test_failed_revoke_write_back_never_overwrites_the_new_holder[dfuse]"; do
	DFUSE_TEST_MODES=dfuse pytest "tests/integration/$t" || failed=1
done
[ "$failed" -eq 0 ]
