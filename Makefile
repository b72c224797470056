# dl4c top-level Makefile: thin wrapper over CMake.
#   make          build (Release with debug info) into build/
#   make demo     train the seed's LeNet on Fashion-MNIST and print the evaluation
#   make test     install what is missing, build, run every test (ctest)
#   make cuda     the CUDA build (cuBLAS, cuDNN, NCCL; nvcc from /usr/local/cuda) into build-cuda/
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

# ---- Hardening (issue 7): sanitizers, fuzzing, valgrind. Each uses its own build directory.
#   make check-asan       AddressSanitizer (+LeakSanitizer): every C test, in build-asan/
#   make check-ubsan      UndefinedBehaviorSanitizer: every C test, in build-ubsan/
#   make check-tsan       ThreadSanitizer: the threaded tests (workers, prefetch), in build-tsan/
#   make check-valgrind   valgrind memcheck (leaks, invalid accesses) on every C test of build/
#   make fuzz             each libFuzzer target for FUZZ_SECONDS (default 60), in build-fuzz/ (clang)
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1

.PHONY: check-asan check-ubsan check-tsan check-valgrind fuzz

check-asan: setup
	JOBS=$(JOBS) bash tests/hardening/sanitize.sh asan build-asan

check-ubsan: setup
	JOBS=$(JOBS) bash tests/hardening/sanitize.sh ubsan build-ubsan

check-tsan: setup
	JOBS=$(JOBS) bash tests/hardening/sanitize.sh tsan build-tsan

check-valgrind: setup build
	JOBS=$(JOBS) bash tests/hardening/valgrind.sh $(BUILD)

fuzz: setup
	JOBS=$(JOBS) FUZZ_JOBS=$(FUZZ_JOBS) bash fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# ---- GPUs (issue 6): the CUDA build into build-cuda/; scripts/gpu-check runs its GPU tests and
# times LeNet against PyTorch on a machine with an NVIDIA GPU.
.PHONY: cuda
cuda:
	cmake -S . -B build-cuda -DDL4C_CUDA=ON $(CMAKE_FLAGS)
	cmake --build build-cuda -j $(JOBS)
