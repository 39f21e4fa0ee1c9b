#!/usr/bin/env bash
# Runs the failure tests (the throwaway cluster frozen, thawed and restarted, under a server's
# load) RUNS times while LOAD busy loops compete for the CPU, and prints the tally: the check
# that a flake which appears only on a loaded machine is gone. Not part of make test.
#   make test-stress RUNS=20 LOAD=4
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
load=${LOAD:-4}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
go test -race -c -o "$dir/testdb.test" ./internal/testdb
go test -race -c -o "$dir/apikeys.test" ./cmd/apikeys
# Each busy loop ends by itself after an hour at most, should this script be killed.
for _ in $(seq "$load"); do timeout 3600 sh -c 'while :; do :; done' & pids+=($!); done
pass=0 fail=0 start=$(date +%s)
for i in $(seq "$runs"); do
  ok=1
  (cd internal/testdb && "$dir/testdb.test" -test.count=1 -test.run '^(TestClusterFreezeThaw|TestClusterRestart|TestFreezeTreeWithAnExitedChild)$' >"$dir/run.log" 2>&1) || ok=0
  if [ $ok = 1 ]; then
    (cd cmd/apikeys && "$dir/apikeys.test" -test.count=1 -test.run '^(TestDatabaseFreezeUnderLoad|TestDatabaseRestartUnderLoad)$' >>"$dir/run.log" 2>&1) || ok=0
  fi
  if [ $ok = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "run $i failed:"; cat "$dir/run.log"; fi
  echo "run $i: $pass passed, $fail failed; load average $(cut -d' ' -f1 /proc/loadavg)"
done
echo "stress: $runs runs of the failure tests with $load busy loops in $(( $(date +%s) - start ))s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
