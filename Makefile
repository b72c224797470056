# dl4c top-level Makefile: thin wrapper over CMake.
#   make          build (Release with debug info) into build/
#   make demo     train the seed's LeNet on Fashion-MNIST and print the evaluation
#   make test     install what is missing, build, run every test (ctest)
#   make bench    benchmarks: tables on stdout, JSON in bench/results/latest.json
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build demo test clean bench

all: build

setup:
	@bash scripts/setup

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: setup build
	bash scripts/demo

test: setup build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Benchmarks (not tests: these machines are noisy). BENCH_ARGS=--quick for the short set.
bench: setup build
	python3 bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
