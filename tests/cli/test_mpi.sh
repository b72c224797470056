#!/usr/bin/env bash
# dl4c train --dist mpi under OpenMPI (Debian's openmpi-bin):
#  - `mpirun -np 2 dl4c train --dist mpi` and `dl4c train --workers 2` (same seed, data,
#    settings) give identical parameters (every tensor np.array_equal) and the same printed
#    evaluation; only rank 0 prints it (exactly one "Accuracy:" line) and writes the model;
#  - a rank killed with SIGKILL during training makes mpirun exit non-zero within a bounded
#    time (no hang), and the checkpoint written before (--checkpoint-every 1) stays intact
#    (dl4c info loads it). dl4c has no fault-injection hook, so the test kills the process.
#
# usage: test_mpi.sh DL4C [BUILD_DIR]      (exit 77 = skipped: no mpirun)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
MPIRUN=(mpirun -np 2 --oversubscribe -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1
        --mca btl "${DL4C_TEST_MPI_BTL:-self,vader,tcp}")
[ "$(id -u)" -ne 0 ] || MPIRUN+=(--allow-run-as-root)

LENET=$SRC/examples/lenet.json
make_idx_slice train 0 3000 tr
make_idx_slice t10k 0 1000 te
ARGS=(--train "$T/tr-images-idx3-ubyte" --test "$T/te-images-idx3-ubyte" --epochs 1
      --prefetch 0 --batch-size-per-worker 32 --averaging-frequency 5)

check "mpirun -np 2 dl4c train --dist mpi: exit 0, one model, one evaluation"
rc=0
timeout 180 "${MPIRUN[@]}" "$DL4C" train "$LENET" "${ARGS[@]}" --dist mpi -o "$T/mpi.safetensors" \
    >mpi.out 2>mpi.err || rc=$?
[ "$rc" -eq 0 ] || { cat mpi.err >&2; fail "mpirun dl4c train exited with $rc"; }
[ -s mpi.safetensors ] || fail "no model written by the MPI run"
n=$(grep -c "Accuracy:" mpi.out || true)
[ "$n" -eq 1 ] || { cat mpi.out >&2; fail "expected exactly one Accuracy: line on mpirun's stdout, got $n"; }
[ "$(grep -c 'model written to' mpi.err || true)" -eq 1 ] || { cat mpi.err >&2; fail "expected one 'model written to' line (rank 0 only)"; }
left=$(find . \( -name '*.tmp*' -o -name '*.probe*' \) -print)
[ -z "$left" ] || fail "temporary files left behind: $left"
"$DL4C" info -m mpi.safetensors >info.out 2>&1 || { cat info.out >&2; fail "MPI model does not load"; }
grep -q "workers 2" info.out || { cat info.out >&2; fail "MPI model's progress does not record 2 workers"; }

check "dl4c train --workers 2 (threads) gives the same parameters and the same evaluation"
"$DL4C" train "$LENET" "${ARGS[@]}" --workers 2 -q -o "$T/local.safetensors" >local.out 2>local.err ||
    { cat local.err >&2; fail "local training failed"; }
tensors_equal mpi.safetensors local.safetensors || fail "MPI and local models differ"
cmp mpi.out local.out || { diff mpi.out local.out | head -20 >&2; fail "MPI and local evaluations differ"; }

check "data that does not fit the network is refused before training, with the file and the sizes"
sed 's/"height": 28, "width": 28/"height": 32, "width": 32/' "$LENET" > wide.json
grep -q '"height": 32' wide.json || fail "could not make the 32x32 configuration"
rc=0
timeout 120 "${MPIRUN[@]}" "$DL4C" train wide.json "${ARGS[@]}" --dist mpi -o "$T/wide.safetensors" >wide.out 2>wide.err || rc=$?
[ "$rc" -ne 0 ] || fail "a 784-feature file trained a 1024-input network under MPI"
grep -q "training data .*tr-images-idx3-ubyte: examples have 784 features, the network's input takes 1024" wide.err ||
    { cat wide.err >&2; fail "no message naming the file and the sizes"; }
grep -q "diverged" wide.err && fail "the mismatch was only noticed in training"
[ ! -e wide.safetensors ] || fail "a model was written"

# ---------------- SIGINT to a rank ----------------
# (mpirun itself answers SIGINT by terminating the job on its own schedule, so the signal goes
# to a rank, as README says.)
check "SIGINT to rank 1: every rank stops after its minibatch, rank 0 writes the checkpoint, --resume under mpirun gives the undisturbed model"
IARGS=("${ARGS[@]}" --epochs 6 --averaging-frequency 40)
timeout 180 "${MPIRUN[@]}" "$DL4C" train "$LENET" "${IARGS[@]}" --dist mpi -q -o "$T/int-straight.safetensors" \
    >/dev/null 2>int-straight.err || { cat int-straight.err >&2; fail "undisturbed MPI run failed"; }
timeout 180 "${MPIRUN[@]}" "$DL4C" train "$LENET" "${IARGS[@]}" --dist mpi -o "$T/int.safetensors" \
    --metrics-out "$T/int.jsonl" >/dev/null 2>int.err &
job=$!
for _ in $(seq 600); do [ -s int.jsonl ] && break; kill -0 $job 2>/dev/null || break; sleep 0.02; done
[ -s int.jsonl ] || { cat int.err >&2; fail "the MPI run ended before it could be interrupted"; }
rank1=
for pid in $(pgrep -f -- "--metrics-out $T/int.jsonl" || true); do
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = dl4c ] || continue
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && rank1=$pid
done
[ -n "$rank1" ] || { kill $job; fail "could not find the rank 1 dl4c process"; }
kill -INT "$rank1"
rc=0; wait $job || rc=$?
[ "$rc" -ne 0 ] || { cat int.err >&2; fail "interrupted MPI run exited 0"; }
grep -q "interrupted; checkpoint in $T/int.safetensors.ckpt" int.err || { cat int.err >&2; fail "no checkpoint/resume message from rank 0"; }
[ ! -e int.safetensors ] || fail "an interrupted MPI run wrote the final model"
grep -o "checkpoint written to .*" int.err | sed 's/^/  /'
timeout 180 "${MPIRUN[@]}" "$DL4C" train "$LENET" "${IARGS[@]}" --dist mpi -q --resume "$T/int.safetensors.ckpt" \
    -o "$T/int.safetensors" >/dev/null 2>int-res.err || { cat int-res.err >&2; fail "resumed MPI run failed"; }
tensors_equal int-straight.safetensors int.safetensors || fail "interrupted + resumed MPI model differs from the undisturbed one"

# ---------------- a rank that dies ----------------
check "SIGKILL of rank 1 mid-training: mpirun exits non-zero within 60 s; the earlier checkpoint is intact"
mkdir kill
CK=$T/kill/ck-$$.safetensors     # unique path: finds this run's processes with pgrep -f
start=$SECONDS
timeout 60 "${MPIRUN[@]}" "$DL4C" train "$LENET" "${ARGS[@]}" --epochs 200 --dist mpi -q \
    --checkpoint-every 1 --checkpoint "$CK" -o "$T/kill/never.safetensors" >kill/out 2>kill/err &
job=$!
for _ in $(seq 300); do [ -s "$CK" ] && break; sleep 0.1; done
[ -s "$CK" ] || { kill "$job" 2>/dev/null || true; cat kill/err >&2; fail "no checkpoint within 30 s"; }
victim=
for _ in $(seq 50); do
    for pid in $(pgrep -f -- "--checkpoint $CK" || true); do
        [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = dl4c ] || continue
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$pid; fi
    done
    [ -n "$victim" ] && break
    sleep 0.1
done
[ -n "$victim" ] || { kill "$job" 2>/dev/null || true; fail "could not find the rank 1 dl4c process"; }
echo "  killing rank 1 (pid $victim) $((SECONDS - start)) s after start"
kill -9 "$victim"
rc=0
wait "$job" || rc=$?
elapsed=$((SECONDS - start))
echo "  mpirun exited with $rc after ${elapsed} s"
[ "$rc" -ne 124 ] || fail "mpirun hung after a rank died (killed by timeout 60)"
[ "$rc" -ne 0 ] || fail "mpirun exited 0 although a rank was killed"
[ ! -e kill/never.safetensors ] || fail "a final model was written although training did not finish"
# No dl4c process of this run may survive.
sleep 1
if pgrep -f -- "--checkpoint $CK" >/dev/null; then
    pgrep -af -- "--checkpoint $CK" >&2
    fail "dl4c processes of the killed run are still alive"
fi
"$DL4C" info -m "$CK" >kill/info.out 2>&1 || { cat kill/info.out >&2; fail "the checkpoint is not loadable after the crash"; }
grep -q "Total parameters: 67780" kill/info.out || { cat kill/info.out >&2; fail "checkpoint summary is wrong"; }
grep -q "workers 2" kill/info.out || fail "checkpoint does not record 2 workers"

echo "PASS: $CHECK_NO checks"
