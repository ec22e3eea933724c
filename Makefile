# Front door. `make` builds, `make test` installs what is missing, builds the
# daemons and dfuse.ko and runs every test (unit, integration on real mounts,
# and the VM suite with dfuse.ko); `make bench` runs the recorded benchmarks.
BUILD ?= build
# Debian's interpreter: python3-matplotlib is installed for it.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build kernel setup test unit sanitize-tree sanitize fuzz fuzz-long vm-test bench bench-vm reproduce plots clean

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
	$(MAKE) sanitize
	$(MAKE) fuzz
	cd $(BUILD) && ctest --output-on-failure --timeout 2400 -j $(JOBS)

# The unit tests, the client's integration tests on real mounts and the
# libFuzzer targets (tests/fuzz), in one tree built with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer; any report fails the test
# that hit it. One tree for both: the fuzz targets need clang and coverage
# instrumentation of the code they reach, and a second tree of the same
# libraries cost CI about three minutes. Each fuzz target runs over its seed
# corpus and explores FUZZ_SECONDS more. `make fuzz-long` records a long run
# (FUZZ_EXECS executions per target) under results/fuzz/.
SANITIZE_BUILD ?= build-sanitize
SANITIZE_ENV = ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FUZZ_SECONDS ?= 15
FUZZ_EXECS ?=
sanitize-tree: setup
	CC=clang CXX=clang++ cmake -S . -B $(SANITIZE_BUILD) -G Ninja -DDFUSE_FUZZ=ON \
	  -DDFUSE_SANITIZE=address,undefined -DDFUSE_BENCH=OFF \
	  -DDFUSE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_FLAGS)
	cmake --build $(SANITIZE_BUILD) -j $(JOBS)

# The integration tests labelled `sanitized` run one at a time (their lock)
# beside the unit tests, which keep the other core busy.
sanitize: sanitize-tree
	cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) ctest --output-on-failure -j $(JOBS) \
	  -L '^(unit|sanitized)$$' -LE python

fuzz: sanitize-tree
	cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) ctest --output-on-failure -j $(JOBS) -L fuzz

fuzz-long: fuzz
	$(SANITIZE_ENV) $(PYTHON) tools/dfuse-fuzz --build $(SANITIZE_BUILD) --out results/fuzz \
	  $(if $(FUZZ_EXECS),--execs $(FUZZ_EXECS))

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

# The paper's evaluation (workloads/matrix.toml) on the local default: all
# three modes in the VM testbed with dfuse.ko, then every figure. With
# INVENTORY=ansible/inventory/<file>, on that cluster through Ansible
# (profile full by default; MODES=a,b and FIGURES=x,y narrow it; dfuse is
# left out, and the manifest says why, where the clients cannot take dfuse.ko).
# CLIENT_ARGS='MODE=FLAGS' passes extra flags to one mode's client daemons,
# MANAGER_ARGS='MODE=FLAGS' to its lease managers.
comma := ,
ifdef INVENTORY
PROFILE ?= full
else
PROFILE ?= quick
endif
OUT ?= results
VM_MEMORY ?= 12288
REPRODUCE_RUN := $(or $(RUN),reproduce-$(PROFILE)-$(shell date -u +%Y%m%d-%H%M%S))
REPRODUCE_ARGS := --profile $(PROFILE) --out $(OUT) --run $(REPRODUCE_RUN) \
  $(if $(MODES),--modes $(MODES)) $(if $(FIGURES),--figures $(FIGURES)) \
  $(if $(REPEATS),--repeats $(REPEATS)) $(if $(MAX_NODES),--max-nodes $(MAX_NODES)) \
  $(if $(CLIENT_ARGS),--client-args '$(CLIENT_ARGS)') \
  $(if $(MANAGER_ARGS),--manager-args '$(MANAGER_ARGS)')
ifdef INVENTORY
# dfuse.ko is built here and shipped to the clients, unless MODES leaves dfuse out.
reproduce: setup build $(if $(MODES),$(if $(filter dfuse,$(subst $(comma), ,$(MODES))),kernel),kernel)
	$(PYTHON) tools/dfuse-reproduce --inventory $(abspath $(INVENTORY)) \
	  --build-dir $(abspath $(BUILD)) $(REPRODUCE_ARGS)
	$(PYTHON) plots/draw.py $(OUT)/$(REPRODUCE_RUN)
else
reproduce: setup build kernel
	tools/dfuse-vm --memory $(VM_MEMORY) --timeout 5400 -- env DFUSE_FUSE_DEVICE=/dev/dfuse \
	  tools/dfuse-reproduce --net inprocess $(REPRODUCE_ARGS)
	$(PYTHON) plots/draw.py $(OUT)/$(REPRODUCE_RUN)
endif

# Redraw every figure from results/ (RUN=<name> for one run).
plots:
	$(PYTHON) plots/draw.py $(if $(RUN),results/$(RUN),--all results)

clean:
	rm -rf $(BUILD)
