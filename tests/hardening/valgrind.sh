#!/usr/bin/env bash
# valgrind memcheck over every C test (ctest label "c") of a build directory: no invalid
# reads or writes, no uninitialised values used, no leaks (definite, indirect or possible).
#   usage: tests/hardening/valgrind.sh BUILD_DIR [ctest -R regex]
# Logs go to BUILD_DIR/valgrind/<test>.log; the summary lists each test's result.
set -euo pipefail
build=${1:?usage: valgrind.sh BUILD_DIR [regex]}
regex=${2:-}
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (make setup)" >&2; exit 1; }
sup="$(cd "$(dirname "$0")" && pwd)/valgrind.supp"
mkdir -p "$build/valgrind"
cd "$build"
ctest -L '^c$' ${regex:+-R "$regex"} --show-only=json-v1 > valgrind/tests.json
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
# cmocka runs each test in-process; valgrind follows the one process.
python3 - "$sup" "${JOBS:-$(nproc)}" <<'PY'
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
sup, jobs = sys.argv[1], int(sys.argv[2])
tests = json.load(open('valgrind/tests.json'))['tests']
def run(t):
    name = t['name']
    cwd = next((p['value'] for p in t.get('properties', []) if p['name'] == 'WORKING_DIRECTORY'), os.getcwd())
    env = dict(os.environ)
    for p in t.get('properties', []):
        if p['name'] == 'ENVIRONMENT':
            for kv in p['value']:
                k, _, v = kv.partition('='); env[k] = v
    log = os.path.abspath('valgrind/' + name.replace('/', '_') + '.log')
    cmd = ['valgrind', '--tool=memcheck', '--leak-check=full', '--show-leak-kinds=definite,indirect,possible',
           '--errors-for-leak-kinds=definite,indirect,possible', '--track-origins=yes', '--error-exitcode=99',
           '--suppressions=' + sup, '--log-file=' + log] + t['command']
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = open(log).read()
    errs = [l for l in text.splitlines() if 'ERROR SUMMARY' in l]
    leaks = [l for l in text.splitlines() if 'definitely lost' in l or 'indirectly lost' in l or 'possibly lost' in l]
    return name, r.returncode, (errs[-1].split('==', 2)[-1].strip() if errs else '?'), log
failed = 0
with ThreadPoolExecutor(jobs) as ex:
    for name, rc, summary, log in ex.map(run, tests):
        ok = rc == 0
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {summary}" + ('' if ok else f' (exit {rc}, see {log})'), flush=True)
print(f"valgrind: {len(tests) - failed}/{len(tests)} tests clean")
sys.exit(1 if failed else 0)
PY
