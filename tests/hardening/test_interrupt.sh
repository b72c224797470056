#!/usr/bin/env bash
# Interruption of a real training run (issue 7), end to end with the dl4c command on a
# Fashion-MNIST slice written as IDX files:
#  - kill -INT mid-run: the minibatch in progress finishes, a checkpoint is written, exit 130
#    with a message saying how to resume; --resume then reaches the same final model as an
#    undisturbed run (every tensor identical), with 2 workers;
#  - the same in the middle of long averaging rounds (the checkpoint holds each worker's own
#    state), with plain averaging and with BMUF without save_updater;
#  - a second signal exits at once (before the round ends) and leaves no damaged or temporary file.
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
    for i in $(seq 1 3000); do
        [ -f "$file" ] && [ "$(wc -l < "$file")" -ge "$n" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

check "undisturbed run"
"$DL4C" "${RUN[@]}" -q -o straight.safetensors >/dev/null 2>straight.err || { cat straight.err >&2; fail "undisturbed run failed"; }

check "kill -INT mid-run: minibatch finished, checkpoint written, exit 130, resume hint"
"$DL4C" "${RUN[@]}" -o resumed.safetensors --metrics-out m1.jsonl >/dev/null 2>int.err &
pid=$!
wait_lines m1.jsonl 3 $pid || { cat int.err >&2; fail "the run ended before it could be interrupted"; }
kill -INT $pid
rc=0; wait $pid || rc=$?
no_crash 0 int.err "interrupted run"
[ $rc -eq 130 ] || { cat int.err >&2; fail "interrupted run: exit $rc, expected 130"; }
grep -q "stopping after this minibatch" int.err || fail "no acknowledgement of the signal on stderr"
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

# mid_round NAME EXTRA_FLAGS...: 15,000 examples per worker in rounds of 200 minibatches (200,
# 200, 69 per epoch; a round takes a tenth of a second or more): SIGINT sent as soon as the
# first round is done lands inside the second: the checkpoint must hold both workers' states
# ("partial"), and --resume must give the undisturbed run's model.
make_idx_slice train 0 30000 big
mid_round() {
    local name=$1; shift
    local run=(train lenet.json --train big-images-idx3-ubyte --test te-images-idx3-ubyte --averaging-frequency 200
               --epochs 2 "$@")
    "$DL4C" "${run[@]}" -q -o "$name-straight.safetensors" >/dev/null 2>"$name-straight.err" ||
        { cat "$name-straight.err" >&2; fail "$name: undisturbed run failed"; }
    "$DL4C" "${run[@]}" -o "$name.safetensors" --metrics-out "$name.jsonl" >/dev/null 2>"$name-int.err" &
    local pid=$! rc=0
    wait_lines "$name.jsonl" 1 $pid || { cat "$name-int.err" >&2; fail "$name: the run ended before it could be interrupted"; }
    kill -INT $pid
    wait $pid || rc=$?
    [ $rc -eq 130 ] || { cat "$name-int.err" >&2; fail "$name: interrupted run: exit $rc, expected 130"; }
    grep -q "in round .* after minibatch" "$name-int.err" || { cat "$name-int.err" >&2; fail "$name: no mid-round checkpoint message"; }
    ls | grep -q '\.tmp\.' && fail "$name: temporary files left behind"
    python3 - "$name.safetensors.ckpt" <<'PY' || fail "$name: the checkpoint does not hold the workers' states of a round cut short"
import json, struct, sys
from safetensors.numpy import load_file
path = sys.argv[1]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    p = json.loads(json.loads(f.read(n))["__metadata__"]["progress"])
part = p["partial"]
assert len(part["batches"]) == 2 and min(part["batches"]) < 200, p
t = load_file(path)
assert all(f"worker.{r}.layers.0.weight" in t for r in (0, 1)), sorted(t)
print("checkpoint in round", p["round"] + 1, "of epoch", p["epoch"] + 1, "minibatches done:", part["batches"])
PY
    "$DL4C" info -m "$name.safetensors.ckpt" >"$name-info.out" 2>&1 || { cat "$name-info.out" >&2; fail "$name: the checkpoint does not load"; }
    grep -q "Checkpoint inside round .* each of the 2 workers" "$name-info.out" ||
        { cat "$name-info.out" >&2; fail "$name: dl4c info does not say the checkpoint is inside a round"; }
    "$DL4C" "${run[@]}" --resume "$name.safetensors.ckpt" -o "$name.safetensors" >/dev/null 2>"$name-res.err" ||
        { cat "$name-res.err" >&2; fail "$name: resumed run failed"; }
    grep -q "resuming from .* in round" "$name-res.err" || { cat "$name-res.err" >&2; fail "$name: resume did not say it continues a round"; }
    tensors_equal "$name-straight.safetensors" "$name.safetensors" ||
        fail "$name: interrupted mid-round + resumed model differs from the undisturbed one"
}

check "kill -INT inside a long averaging round: every worker's state saved, --resume gives the same model"
mid_round plain
check "the same with BMUF averaging and save_updater off"
mid_round bmuf --averaging bmuf --block-momentum 0.5 --no-save-updater

check "a second signal exits at once, leaving no damaged or temporary file"
# Long minibatches (6,000 examples through 16 channels: about a second a step even with fast
# kernels), so the first signal's minibatch is still running when the second one comes.
sed 's/"n_out": 8,/"n_out": 16,/' lenet.json > wide.json
"$DL4C" train wide.json --train big-images-idx3-ubyte --test te-images-idx3-ubyte \
    --batch-size-per-worker 6000 --averaging-frequency 5 --epochs 3 --checkpoint-every 1 \
    -o twice.safetensors --metrics-out m2.jsonl >/dev/null 2>twice.err &
pid=$!
wait_lines m2.jsonl 1 $pid || { cat twice.err >&2; fail "the run ended before it could be interrupted"; }
kill -INT $pid
sleep 0.05
t0=$(date +%s.%N)
kill -TERM $pid
rc=0; wait $pid || rc=$?
t1=$(date +%s.%N)
[ $rc -eq 143 ] || { cat twice.err >&2; fail "second signal: exit $rc, expected death by SIGTERM (143)"; }
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 2.0 else 1)" || fail "second signal: took $(python3 -c "print($t1 - $t0)") s to exit"
grep -q "interrupted; checkpoint" twice.err && fail "second signal: the run went on to checkpoint"
ls | grep -q '\.tmp\.' && fail "second signal: temporary files left behind: $(ls | grep '\.tmp\.')"
for f in twice.safetensors*; do
    [ -e "$f" ] || continue
    "$DL4C" info -m "$f" >/dev/null 2>&1 || fail "$f is damaged after the second signal"
done
echo "ok"
