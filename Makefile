# Front door. `make` builds, `make test` installs what is missing, builds and
# runs every test; `make bench` runs the recorded benchmark.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build setup test unit bench clean

all: build

setup:
	tools/setup-deps.sh test

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: setup
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure --timeout 1500

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

bench: setup build
	tools/bench-fio --out results

clean:
	rm -rf $(BUILD)
