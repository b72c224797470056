# shellcheck shell=bash
# Shared helpers of the tests/cli/test_*.sh scripts (sourced, not run).
#
# Usage in a script:   source "$(dirname "$0")/lib.sh" "$@"
# Arguments of the script: DL4C (the dl4c binary), BUILD_DIR (unused by most).
# Sets DL4C, SRC (the source tree), T (a temp dir removed on exit) and cds into T.
#
# Python: `python3` is the PyPI interpreter (numpy, safetensors); `/usr/bin/python3` is
# Debian's (torch, numpy, safetensors) and is used only where torch is needed.

if [ $# -lt 1 ]; then
    echo "usage: $0 DL4C [BUILD_DIR]" >&2
    exit 2
fi
DL4C=$(readlink -f "$1")
# shellcheck disable=SC2034  # used by the scripts that source this file
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FMNIST=${DL4C_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -x "$DL4C" ] || { echo "FAIL: $DL4C is not an executable" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/dl4c-cli-test.XXXXXX")
cleanup_dirs=("$T")
_cleanup() {
    local d
    for d in "${cleanup_dirs[@]}"; do rm -rf "$d"; done
}
trap _cleanup EXIT
cd "$T" || exit 1

CHECK_NO=0
# check "what is checked": prints a numbered line (the test's log).
check() {
    CHECK_NO=$((CHECK_NO + 1))
    echo "[$CHECK_NO] $*"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# make_idx_slice SPLIT START COUNT OUTSTEM: writes OUTSTEM-images-idx3-ubyte and
# OUTSTEM-labels-idx1-ubyte (uncompressed, valid IDX headers) holding examples
# [START, START+COUNT) of Fashion-MNIST's SPLIT (train or t10k).
make_idx_slice() {
    python3 - "$FMNIST" "$1" "$2" "$3" "$4" <<'EOF'
import gzip, struct, sys
d, split, start, count, stem = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with gzip.open(f"{d}/{split}-images-idx3-ubyte.gz") as f:
    magic, n, h, w = struct.unpack(">IIII", f.read(16))
    assert magic == 0x803 and start + count <= n
    f.read(start * h * w)
    img = f.read(count * h * w)
with gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz") as f:
    magic, n = struct.unpack(">II", f.read(8))
    assert magic == 0x801
    f.read(start)
    lab = f.read(count)
with open(f"{stem}-images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, count, h, w) + img)
with open(f"{stem}-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 0x801, count) + lab)
EOF
}

# make_fmnist_csv IMAGES_IDX OUT.csv [N]: the first N examples of an IDX slice as CSV rows of
# 784 pixel values (0..255) followed by the label.
make_fmnist_csv() {
    python3 - "$1" "$2" "${3:-200}" <<'EOF'
import struct, sys
import numpy as np
img_path, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lab_path = img_path.replace("images-idx3", "labels-idx1")
with open(img_path, "rb") as f:
    _, cnt, h, w = struct.unpack(">IIII", f.read(16))
    x = np.frombuffer(f.read(), np.uint8).reshape(cnt, h * w)[:n]
with open(lab_path, "rb") as f:
    f.read(8)
    y = np.frombuffer(f.read(), np.uint8)[:n]
np.savetxt(out, np.hstack([x, y[:, None]]).astype(int), fmt="%d", delimiter=",")
EOF
}

# make_tiny_csv OUT.csv [N]: a synthetic 4-feature, 3-class data set.
make_tiny_csv() {
    python3 - "$1" "${2:-60}" <<'EOF'
import sys
import numpy as np
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
y = np.arange(n) % 3
x = rng.normal(size=(n, 4)) + y[:, None]
with open(out, "w") as f:
    for xi, yi in zip(x, y):
        f.write(",".join(f"{v:.4f}" for v in xi) + f",{yi}\n")
EOF
}

# tensors_equal A B: exit 0 when the two safetensors files hold the same tensor names with
# byte-identical values (np.array_equal per tensor); prints the differences otherwise.
tensors_equal() {
    python3 - "$1" "$2" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
bad = []
if sorted(a) != sorted(b):
    bad.append(f"tensor names differ: {sorted(set(a) ^ set(b))}")
for k in sorted(set(a) & set(b)):
    if a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]):
        d = np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max() if a[k].shape == b[k].shape else "shape"
        bad.append(f"{k}: differs (max abs diff {d})")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print(f"{len(a)} tensors identical")
EOF
}

# no_crash RC STDERR_FILE WHAT: fails if the command crashed (signal exit or assertion /
# sanitizer report on stderr).
no_crash() {
    local rc=$1 err=$2 what=$3
    if [ "$rc" -ge 128 ]; then
        cat "$err" >&2
        fail "$what: crashed (exit $rc)"
    fi
    if grep -qiE 'Assertion|Sanitizer|Segmentation|core dumped|DL4C_ASSERT' "$err"; then
        cat "$err" >&2
        fail "$what: assertion or sanitizer report on stderr"
    fi
}
