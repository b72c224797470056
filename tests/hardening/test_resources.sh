#!/usr/bin/env bash
# Divergence, memory and disk limits at the dl4c command (issue 7):
#  - divergence: a NaN/inf stops training with a message naming layer and iteration, the last
#    good checkpoint is named and kept finite, an existing model file is not overwritten;
#    --on-nan skip-batch goes on;
#  - memory: a configuration needing more than the machine (or --memory-limit) is refused before
#    training with the estimate; data that does not fit is streamed from its file, giving the
#    same model as in-memory training with a smaller resident set;
#  - disk: unwritable outputs and a file size limit are refused before training; a disk that
#    fills during training (a small tmpfs, when this runs as root) gives an error and never a
#    truncated or temporary file.
#   usage: test_resources.sh DL4C [BUILD_DIR]
source "$(dirname "$0")/../cli/lib.sh" "$@"

# A small MLP on 4-feature CSV data; rows 0 and 150 hold values whose products overflow (with
# seed 3 and 2 workers, row 0 is fitted at iteration 4, after the first checkpoint).
python3 - <<'PY'
import random
random.seed(3)
with open("good.csv", "w") as f, open("bad.csv", "w") as g:
    for i in range(240):
        y = i % 3
        x = [random.gauss(0, 1) + y for _ in range(4)]
        row = ",".join(f"{v:.4f}" for v in x) + f",{y}\n"
        f.write(row)
        g.write(("3e38,-3e38,3e38,3e38," + str(y) + "\n") if i in (0, 150) else row)
PY
cat > mlp.json <<'JSON'
{"seed": 3, "updater": {"type": "adam", "learning_rate": 0.01},
 "input": {"features": 4},
 "layers": [{"type": "dense", "n_out": 16, "activation": "relu", "name": "hidden"},
            {"type": "output", "n_out": 3, "activation": "softmax", "loss": "nll"}],
 "training": {"epochs": 2, "batch_size_per_worker": 8, "workers": 2, "averaging_frequency": 2,
              "save_updater": true}}
JSON

# ---------------- divergence ----------------
check "divergence: stops naming layer and iteration, last good checkpoint named, model file untouched"
echo "an older model" > old.safetensors
sum_before=$(sha256sum old.safetensors)
rc=0
"$DL4C" train mlp.json --train bad.csv --checkpoint-every 1 --checkpoint ck.safetensors -o old.safetensors \
    >div.out 2>div.err || rc=$?
no_crash $rc div.err "diverging run"
[ $rc -eq 1 ] || { cat div.err >&2; fail "diverging run: exit $rc, expected 1"; }
grep -qE "training diverged at epoch 1, iteration [0-9]+ \(worker [01]\)" div.err || { cat div.err >&2; fail "no epoch/iteration in the message"; }
grep -qE "layer [01] \((dense \"hidden\"|output)\)" div.err || { cat div.err >&2; fail "no layer in the message"; }
grep -q "the last good checkpoint is ck.safetensors" div.err || { cat div.err >&2; fail "the last good checkpoint is not named"; }
[ "$(sha256sum old.safetensors)" = "$sum_before" ] || fail "the existing model file was overwritten"
ls | grep -q '\.tmp\.' && fail "temporary files left behind"
python3 - <<'PY' || fail "the checkpoint holds non-finite values"
import numpy as np
from safetensors.numpy import load_file
t = load_file("ck.safetensors")
assert all(np.isfinite(v).all() for v in t.values()), "non-finite"
PY

check "divergence: --on-nan skip-batch drops the bad minibatches and finishes"
"$DL4C" train mlp.json --train bad.csv --on-nan skip-batch -o skip.safetensors >skip.out 2>skip.err ||
    { cat skip.err >&2; fail "skip-batch run failed"; }
grep -q "skipped" skip.err || fail "skip-batch: no report of the skipped minibatches"
python3 - <<'PY' || fail "skip-batch model holds non-finite values"
import numpy as np
from safetensors.numpy import load_file
assert all(np.isfinite(v).all() for v in load_file("skip.safetensors").values())
PY
rc=0; "$DL4C" train mlp.json --train good.csv --on-nan sometimes >/dev/null 2>bad_flag.err || rc=$?
[ $rc -eq 2 ] && grep -q "expected stop or skip-batch" bad_flag.err || fail "--on-nan: bad value not refused"

# ---------------- memory ----------------
check "memory: a configuration too big for the machine is refused before training, with the estimate"
cat > huge.json <<'JSON'
{"input": {"features": 4},
 "layers": [{"type": "dense", "n_out": 1000000000, "activation": "relu"},
            {"type": "output", "n_out": 3}],
 "training": {"workers": 4}}
JSON
rc=0; start=$(date +%s)
"$DL4C" train huge.json --train good.csv -o huge.safetensors >huge.out 2>huge.err || rc=$?
no_crash $rc huge.err "huge configuration"
[ $rc -eq 2 ] || { cat huge.err >&2; fail "huge configuration: exit $rc, expected 2"; }
grep -qE "this run needs about [0-9.]+ (GiB|TiB) of memory: 4 worker\(s\)" huge.err || { cat huge.err >&2; fail "no estimate in the message"; }
grep -q "MemAvailable" huge.err || fail "the message does not say what it was compared with"
[ $(( $(date +%s) - start )) -le 5 ] || fail "the refusal took too long (allocated something?)"
[ ! -e huge.safetensors ] || fail "a refused run wrote a model"
rc=0; "$DL4C" train mlp.json --train good.csv --memory-limit 2K >small.out 2>small.err || rc=$?
[ $rc -eq 2 ] && grep -q "the --memory-limit is 2.0 KiB" small.err || { cat small.err >&2; fail "--memory-limit not applied"; }

check "memory: data that does not fit is streamed from the file: same model, smaller resident set"
make_idx_slice train 0 20000 big
cat > fm.json <<'JSON'
{"seed": 5, "updater": {"type": "sgd", "learning_rate": 0.05},
 "input": {"channels": 1, "height": 28, "width": 28},
 "layers": [{"type": "dense", "n_out": 32, "activation": "relu"},
            {"type": "output", "n_out": 10, "activation": "softmax", "loss": "nll"}],
 "training": {"epochs": 1, "batch_size_per_worker": 50, "workers": 2, "averaging_frequency": 4, "prefetch": 1}}
JSON
peak() {   # runs a command; prints its peak resident set in KiB
    python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open("peak.err", "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -r.returncode - 1000)' "$@"
}
rss_mem=$(peak "$DL4C" train fm.json --train big-images-idx3-ubyte -o inmem.safetensors)
[ "$rss_mem" -gt 0 ] || { cat peak.err >&2; fail "in-memory run failed"; }
rss_str=$(peak "$DL4C" train fm.json --train big-images-idx3-ubyte --memory-limit 30M -o streamed.safetensors)
[ "$rss_str" -gt 0 ] || { cat peak.err >&2; fail "streamed run failed"; }
grep -q "does not fit in the --memory-limit" peak.err || { cat peak.err >&2; fail "no streaming notice"; }
grep -q "streaming big-images-idx3-ubyte in blocks of" peak.err || { cat peak.err >&2; fail "no block size notice"; }
tensors_equal inmem.safetensors streamed.safetensors || fail "streamed training differs from in-memory training"
echo "peak RSS: in memory ${rss_mem} KiB, streamed ${rss_str} KiB"
# 20000 examples are 61 MiB as floats: streaming must save most of that.
[ $((rss_mem - rss_str)) -gt 40000 ] || fail "streaming did not lower the peak resident set enough"
"$DL4C" train fm.json --train big-images-idx3-ubyte --stream -q -o stream2.safetensors >/dev/null 2>s2.err ||
    { cat s2.err >&2; fail "--stream failed"; }
tensors_equal inmem.safetensors stream2.safetensors || fail "--stream differs from in-memory training"

# ---------------- disk ----------------
check "disk: unwritable outputs are refused before training"
for args in "-o /nonexistent-dir/m.safetensors" "--checkpoint /nonexistent-dir/c.safetensors --checkpoint-every 1" \
            "--metrics-out /nonexistent-dir/m.jsonl"; do
    rc=0
    # shellcheck disable=SC2086
    "$DL4C" train mlp.json --train good.csv $args >/dev/null 2>unw.err || rc=$?
    [ $rc -eq 2 ] || { cat unw.err >&2; fail "$args: exit $rc, expected 2"; }
    grep -q "nonexistent-dir" unw.err || fail "$args: the message does not name the path"
    grep -q "epoch" unw.err && fail "$args: training started"
done

check "disk: a file size limit too small for the model is refused before training"
rc=0
( ulimit -f 64; exec "$DL4C" train fm.json --train big-images-idx3-ubyte -o limited.safetensors ) >/dev/null 2>fsize.err || rc=$?
no_crash $rc fsize.err "ulimit -f run"
[ $rc -eq 2 ] || { cat fsize.err >&2; fail "ulimit -f: exit $rc, expected 2"; }
grep -q "file size limit (ulimit -f)" fsize.err || { cat fsize.err >&2; fail "ulimit -f: no message"; }
grep -q "epoch" fsize.err && fail "ulimit -f: training started"
[ ! -e limited.safetensors ] || fail "ulimit -f: a model file was written"

check "disk: a full disk (tmpfs) is refused before training, or fails the write cleanly when it fills later"
mnt="$T/small-fs"
mkdir -p "$mnt"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=64k tmpfs "$mnt" 2>/dev/null; then
    cleanup_dirs=("$T")   # unmounted below before the directory goes
    rc=0
    "$DL4C" train fm.json --train big-images-idx3-ubyte -o "$mnt/m.safetensors" >/dev/null 2>full.err || rc=$?
    [ $rc -eq 2 ] && grep -q "free" full.err || { cat full.err >&2; umount "$mnt"; fail "full disk: not refused before training"; }
    umount "$mnt"
    # Room for the model at the start; the disk fills during training: the save fails, the
    # older model stays as it was, and nothing is left half-written.
    mount -t tmpfs -o size=2m tmpfs "$mnt"
    echo "older model" > "$mnt/m.safetensors"
    "$DL4C" train fm.json --train big-images-idx3-ubyte --epochs 2 -o "$mnt/m.safetensors" --metrics-out fill.jsonl \
        >/dev/null 2>fill.err &
    pid=$!
    for _ in $(seq 1 400); do [ -s fill.jsonl ] && break; sleep 0.05; done
    dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null || true   # until ENOSPC
    rc=0; wait $pid || rc=$?
    no_crash $rc fill.err "disk filled during training"
    ok=1
    [ $rc -eq 2 ] || ok=0
    grep -q "No space left on device" fill.err || ok=0
    [ "$(cat "$mnt/m.safetensors")" = "older model" ] || ok=0
    ls "$mnt" | grep -q '\.tmp\.' && ok=0
    listing=$(ls -la "$mnt")
    umount "$mnt"
    [ $ok -eq 1 ] || { cat fill.err >&2; echo "$listing" >&2; fail "disk filled during training: exit $rc, expected a clean write error"; }
else
    echo "  (skipped: cannot mount a tmpfs here; the ulimit -f case covers the limit)"
fi
echo "ok"
