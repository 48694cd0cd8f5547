#!/usr/bin/env bash
# The official OpenAI client library (npm `openai`) against /v1/audio/speech, then
# /openapi.json under an independent OpenAPI validator (@apidevtools/swagger-parser from the npm
# registry, pinned by package-lock.json) and /metrics under `promtool check metrics` (from
# Debian's prometheus package; scripts/install-deps extracts it). Usage: BUILD SRC
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
promtool=/usr/local/lib/kiln-tools/bin/promtool
[ -x "$promtool" ] || fail "$promtool missing: run scripts/install-deps"
# The validators, installed once per build tree from the lock file.
npmdir=$(bash "$src/tests/integration/npm_validators.sh" "$build" "$src") || fail "npm packages"

cd "$work"
kiln=$build/bin/kiln
"$kiln" serve --set server.port=0 --set missions.workers=1 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do grep -q "serving http://" "$work/serve.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log" | head -1)
[ -n "$port" ] || { cat "$work/serve.log"; fail "serve did not start"; }
url=http://127.0.0.1:$port

# Traffic first, so every metric family has samples (a mission, a tool call, errors).
key=$("$kiln" --log-level warn keys create --tenant t --role operator | head -1)
"$kiln" --server "$url" --api-key "$key" mission start hello --wait >/dev/null || fail "mission failed"
"$kiln" --server "$url" --api-key "$key" tool invoke kiln.echo --input '{}' >/dev/null
"$kiln" --server "$url" tool list >/dev/null 2>&1 || true   # a 401
"$kiln" --server "$url" server openapi > "$work/openapi.json"
node "$npmdir/openai-speech.js" "$url" "$key" "$work" || fail "the OpenAI client could not use /v1/audio/speech"
"$kiln" --server "$url" server metrics > "$work/metrics.txt"

node "$npmdir/validate-openapi.js" "$work/openapi.json" || fail "/openapi.json is not valid OpenAPI"
"$promtool" check metrics < "$work/metrics.txt" || fail "promtool rejects /metrics"
for family in kiln_http_requests_total kiln_http_request_duration_seconds_bucket \
              kiln_tool_calls_total kiln_missions kiln_ledger_events kiln_ready kiln_telemetry_sessions \
              kiln_mission_files kiln_mission_files_bytes kiln_database_bytes \
              kiln_ledger_commits_total kiln_ledger_syncs_total kiln_ledger_checkpoints_total kiln_ledger_appended_total kiln_ledger_audit_failures_total; do
  grep -q "^$family" "$work/metrics.txt" || fail "/metrics lacks $family"
done
grep -q 'status="401"' "$work/metrics.txt" || fail "/metrics did not count the 401"
echo "openapi and metrics valid"
