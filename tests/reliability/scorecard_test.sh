#!/usr/bin/env bash
# scripts/reliability end to end: runs the suite (few kill iterations), writes a scorecard in
# JSON and Markdown, and a diagnostics bundle with every promised file. Usage: BUILD SRC
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

rc=0
"$src/scripts/reliability" --iterations x >/dev/null 2>"$work/usage.err" || rc=$?
[ "$rc" -eq 2 ] || fail "a bad --iterations should exit 2, got $rc"
grep -q "iterations takes a number" "$work/usage.err" || fail "no usage message"

cd "$work"
"$src/scripts/reliability" --build "$build" --out "$work/out" --iterations 8 \
  -- --set "storage.path=$work/deploy/kiln.db" --set "gates.dir=$work/deploy/gates" \
  >"$work/run.log" 2>&1 || {
    cat "$work/run.log"
    # The failed binaries' own logs go with this directory when the test ends: their last lines.
    for log in $(sed -n 's/.*FAILED (.*log: \(.*\))$/\1/p' "$work/run.log"); do
      echo "--- the end of $log"
      tail -40 "$log"
    done
    fail "scripts/reliability failed"
  }
/usr/bin/python3 - "$work/out/scorecard.json" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))
assert card["ok"] is True, card
names = {i["test"] for i in card["invariants"]}
for must in ["kill_9_never_loses_an_acknowledged_event",
             "kill_9_while_missions_run_loses_nothing_and_finishes_each_once",
             "a_full_disk_fails_cleanly_and_the_next_start_recovers",
             "a_segfault_fails_the_call_and_the_child_restarts_with_backoff",
             "a_hang_is_killed_at_the_deadline",
             "in_process_throws_are_contained",
             "a_changed_row_is_named", "reordered_rows_are_named"]:
    assert must in names, must
assert all(i["passed"] and i["assertions"] > 0 for i in card["invariants"]), card
assert card["kill_iterations"] == 8
PY
grep -q "^\*\*PASS\*\*: " "$work/out/scorecard.md" || fail "scorecard.md has no PASS line"
bundle=$(ls "$work"/out/kiln-diagnostics-*.tar.gz)
listing=$(tar tzf "$bundle")
for f in version.json config-explain.json plugins.json nodes.json gate-status.json \
         policy-validate.json db-status.json ledger-verify.json scorecard.json scorecard.md \
         MANIFEST SHA256SUMS; do
  echo "$listing" | grep -q "/$f\$" || fail "bundle lacks $f"
done
tar xzf "$bundle" -C "$work"
grep -q '"plugins.search_paths"' "$work"/kiln-diagnostics-*/config-explain.json \
  || fail "config explain is empty"
grep -q "$work/deploy/kiln.db" "$work"/kiln-diagnostics-*/config-explain.json \
  || fail "the bundle did not use the deployment's options"
echo "scorecard and bundle ok"
