#!/usr/bin/env bash
# The CUDA build compiles and links (nvcc, cuBLAS, cuDNN, NCCL), and its GPU tests run: on a
# machine without a GPU they report themselves skipped. Usage: cuda_build.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 dir=$2
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$src" -B "$dir" -DDL4C_CUDA=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$jobs" --target dl4c dl4c_cli gpu_bench_lenet \
    $(cd "$src/tests/gpu" && ls test_*.c | sed 's/^/gpu_/; s/\.c$//') 2>&1 | tail -n 3
nm -D "$dir/libdl4c.so" | grep dl4c_backend_cuda_open >/dev/null || { echo "libdl4c.so has no CUDA backend"; exit 1; }
cd "$dir" && ctest -L gpu --output-on-failure
