#!/usr/bin/env bash
# Interruption of a real training run (issue 7), end to end with the dl4c command on a
# Fashion-MNIST slice written as IDX files:
#  - kill -INT mid-run: the round finishes, a checkpoint is written, exit 130 with a message
#    saying how to resume; --resume then reaches the same final model as an undisturbed run
#    (every tensor identical), with 2 workers;
#  - a second signal exits at once (before the round ends) and leaves no damaged file.
#   usage: test_interrupt.sh DL4C [BUILD_DIR]
source "$(dirname "$0")/../cli/lib.sh" "$@"

make_idx_slice train 0 6000 tr
make_idx_slice t10k 0 500 te
cat > lenet.json <<'JSON'
{"seed": 7, "updater": {"type": "adam", "learning_rate": 0.002}, "l2": 0.0005,
 "input": {"channels": 1, "height": 28, "width": 28},
 "layers": [
   {"type": "conv2d", "kernel": [5, 5], "n_out": 8, "activation": "relu"},
   {"type": "subsampling", "kernel": [2, 2], "stride": [2, 2]},
   {"type": "dense", "n_out": 64, "activation": "relu"},
   {"type": "output", "n_out": 10, "activation": "softmax", "loss": "nll"}],
 "training": {"epochs": 2, "batch_size_per_worker": 32, "workers": 2, "averaging_frequency": 2,
              "prefetch": 1, "save_updater": true}}
JSON
RUN=(train lenet.json --train tr-images-idx3-ubyte --test te-images-idx3-ubyte)

# waits until FILE has at least N lines (the run is training), or the process has ended
wait_lines() {
    local file=$1 n=$2 pid=$3 i
    for i in $(seq 1 600); do
        [ -f "$file" ] && [ "$(wc -l < "$file")" -ge "$n" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

check "undisturbed run"
"$DL4C" "${RUN[@]}" -q -o straight.safetensors >/dev/null 2>straight.err || { cat straight.err >&2; fail "undisturbed run failed"; }

check "kill -INT mid-run: round finished, checkpoint written, exit 130, resume hint"
"$DL4C" "${RUN[@]}" -o resumed.safetensors --metrics-out m1.jsonl >/dev/null 2>int.err &
pid=$!
wait_lines m1.jsonl 3 $pid || { cat int.err >&2; fail "the run ended before it could be interrupted"; }
kill -INT $pid
rc=0; wait $pid || rc=$?
no_crash 0 int.err "interrupted run"
[ $rc -eq 130 ] || { cat int.err >&2; fail "interrupted run: exit $rc, expected 130"; }
grep -q "stopping after this round" int.err || fail "no acknowledgement of the signal on stderr"
grep -q "Resume with the same command and --resume resumed.safetensors.ckpt" int.err || { cat int.err >&2; fail "no resume hint"; }
[ -f resumed.safetensors.ckpt ] || fail "no checkpoint after SIGINT"
[ ! -e resumed.safetensors ] || fail "an interrupted run wrote the final model"
ls | grep -q '\.tmp\.' && fail "temporary files left behind: $(ls | grep '\.tmp\.')"
"$DL4C" info -m resumed.safetensors.ckpt >info.out 2>&1 || { cat info.out >&2; fail "the checkpoint does not load"; }
python3 - <<'PY' || fail "the checkpoint is not mid-training"
import json, struct
with open("resumed.safetensors.ckpt", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    p = json.loads(json.loads(f.read(n))["__metadata__"]["progress"])
assert (p["epoch"], p["round"]) != (2, 0) and p["iteration"] > 0, p
print("checkpoint at", p)
PY

check "--resume from the checkpoint reaches the undisturbed run's model (every tensor identical)"
"$DL4C" "${RUN[@]}" -q --resume resumed.safetensors.ckpt -o resumed.safetensors >/dev/null 2>res.err ||
    { cat res.err >&2; fail "resumed run failed"; }
tensors_equal straight.safetensors resumed.safetensors || fail "interrupted + resumed model differs from the undisturbed one"

check "a second signal exits at once, leaving no damaged file"
# Long rounds (one round per epoch, 15,000 examples per worker: seconds even with fast kernels):
# the second signal comes long before the round ends.
make_idx_slice train 0 30000 big
"$DL4C" train lenet.json --train big-images-idx3-ubyte --test te-images-idx3-ubyte \
    --batch-size-per-worker 3000 --averaging-frequency 5 --epochs 3 --checkpoint-every 1 \
    -o twice.safetensors --metrics-out m2.jsonl >/dev/null 2>twice.err &
pid=$!
wait_lines m2.jsonl 1 $pid || { cat twice.err >&2; fail "the run ended before it could be interrupted"; }
kill -INT $pid
sleep 0.3
t0=$(date +%s.%N)
kill -TERM $pid
rc=0; wait $pid || rc=$?
t1=$(date +%s.%N)
[ $rc -eq 143 ] || { cat twice.err >&2; fail "second signal: exit $rc, expected death by SIGTERM (143)"; }
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 2.0 else 1)" || fail "second signal: took $(python3 -c "print($t1 - $t0)") s to exit"
grep -q "interrupted; checkpoint" twice.err && fail "second signal: the run went on to checkpoint"
for f in twice.safetensors*; do
    [ -e "$f" ] || continue
    case $f in *.tmp.*) continue ;; esac   # an unfinished temporary file is not the model
    "$DL4C" info -m "$f" >/dev/null 2>&1 || fail "$f is damaged after the second signal"
done
echo "ok"
