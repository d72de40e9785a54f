#!/usr/bin/env bash
# Run the test files that start worker threads (ONNX Runtime sessions in threads) many times in
# a row and report native aborts ("terminate called after throwing an instance of
# 'Napi::Error'", SIGABRT) apart from ordinary test failures. Not part of `npm test`.
#
#   scripts/stress-workers.sh [RUNS] [test-name ...]
#   scripts/stress-workers.sh 50                      # every worker-thread test file, 50 runs each
#   scripts/stress-workers.sh 50 serve-api            # just test/serve-api.test.ts
#   STRESS_STATE=stress.tsv scripts/stress-workers.sh 50   # resumable: see below
#
# With STRESS_STATE=FILE every finished run is appended to FILE (file, run, result, commit,
# time); a rerun counts each file's passes in a row from it and goes on from there (a failed or
# aborted run starts that file's count again), so 50 runs can span interrupted sessions.
#
# Builds once (npm run build), then runs dist/test/<name>.test.js RUNS times per file. queue needs the
# Redis of the tests (bash .ci/start-redis.sh). Exit status: 1 if any run aborted or failed.
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-50}
shift || true
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
  # Every test file that starts worker threads: the server's exact-map thread, occlude
  # --workers (in-process and through the CLI), BullMQ's sandboxed shard processors.
  FILES=(serve-api serve-browser occlusion-exact occlude-cli queue)
fi
# The whole build, as npm test makes it: the browser test needs the viewer bundle (dist/web/).
npm run build >/dev/null || { echo "build failed"; exit 1; }
LOG=$(mktemp -d "${TMPDIR:-/tmp}/occmap-stress.XXXXXX")
status=0
for f in "${FILES[@]}"; do
  file="dist/test/$f.test.js"
  [ -f "$file" ] || { echo "$f: no $file"; status=1; continue; }
  aborts=0; fails=0; t0=$(date +%s)
  start=1
  if [ -n "${STRESS_STATE:-}" ] && [ -f "$STRESS_STATE" ]; then
    # passes in a row at the end of this file's record
    done_runs=$(awk -F'\t' -v f="$f" '$1 == f { n = ($3 == "ok") ? n + 1 : 0 } END { print n + 0 }' "$STRESS_STATE")
    start=$((done_runs + 1))
    [ "$done_runs" -gt 0 ] && echo "$f: $done_runs runs in a row already passed ($STRESS_STATE)"
  fi
  for i in $(seq "$start" "$RUNS"); do
    out="$LOG/$f.$i.log"
    node --test "$file" >"$out" 2>&1
    rc=$?
    if [ $rc -ge 128 ] || grep -qE "terminate called|Napi::Error|Aborted|SIGABRT|core dumped" "$out"; then
      aborts=$((aborts + 1)); result=abort; echo "$f run $i: ABORT (exit $rc), log $out"
    elif [ $rc -ne 0 ]; then
      fails=$((fails + 1)); result=fail; echo "$f run $i: FAIL (exit $rc): $(grep -E '^not ok' "$out" | head -3 | tr '\n' ' ') log $out"
    else
      result=ok; rm -f "$out"
    fi
    if [ -n "${STRESS_STATE:-}" ]; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$i" "$result" "$(git rev-parse --short HEAD 2>/dev/null)" "$(date -u +%FT%TZ)" >> "$STRESS_STATE"
    fi
  done
  echo "$f: runs $start-$RUNS, $aborts aborted, $fails failed, $(( $(date +%s) - t0 )) s"
  [ $aborts -eq 0 ] && [ $fails -eq 0 ] || status=1
done
echo "logs of bad runs: $LOG"
exit $status
