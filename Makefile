# dl4c top-level Makefile: thin wrapper over CMake.
#   make          build (Release with debug info) into build/
#   make demo     train the seed's LeNet on Fashion-MNIST and print the evaluation
#   make test     install what is missing, build, run every test (ctest)
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

clean:
	rm -rf $(BUILD)
