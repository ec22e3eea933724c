# Front door. `make` builds, `make test` installs what is missing, builds the
# daemons and dfuse.ko and runs every test (unit, integration on real mounts,
# and the VM suite with dfuse.ko); `make bench` runs the recorded benchmarks.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build kernel setup test unit vm-test bench bench-vm clean

all: build

setup:
	tools/setup-deps.sh all

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# dfuse.ko for Debian 12's 6.1 kernel (and the kernel image the VM boots).
kernel:
	kernel/build.sh --check

test: setup
	$(MAKE) build
	$(MAKE) kernel
	cd $(BUILD) && ctest --output-on-failure --timeout 2400

vm-test: build kernel
	tools/dfuse-vm -- env DFUSE_BUILD_DIR=$(abspath $(BUILD)) tests/vm/guest-suite.sh

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

bench: setup build
	tools/bench-fio --out results

# 4 KiB random writes, 4 nodes, all three modes on dfuse.ko in the VM.
bench-vm: setup build kernel
	tools/dfuse-vm -- env DFUSE_FUSE_DEVICE=/dev/dfuse tools/bench-fio --out results --run vm-randwrite --modes dfuse,writethrough,weakwriteback \
	  --nodes 4 --jobs randwrite --size 16M --runtime 15 --net inprocess

clean:
	rm -rf $(BUILD)
