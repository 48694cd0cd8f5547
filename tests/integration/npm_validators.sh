#!/usr/bin/env bash
# Installs the independent implementations the tests compare against (npm packages pinned by
# validators/package-lock.json: swagger-parser, the OpenAI client, cbor) once per build tree and
# prints the directory. Usage: npm_validators.sh BUILD SRC
set -euo pipefail
build=$1
src=$2
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "node and npm are needed (scripts/install-deps)" >&2
  exit 1
}
npmdir=$build/tests/npm-validators
mkdir -p "$build/tests"
# Tests run in parallel: one installs, the others wait for it.
exec 9>"$build/tests/npm-validators.lock"
flock 9
if ! cmp -s "$src/tests/integration/validators/package-lock.json" "$npmdir/package-lock.json"; then
  mkdir -p "$npmdir"
  cp "$src/tests/integration/validators/"{package.json,package-lock.json} "$npmdir/"
  (cd "$npmdir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || {
    echo "npm ci failed in $npmdir" >&2
    exit 1
  }
fi
cp "$src/tests/integration/validators/"*.js "$npmdir/"
echo "$npmdir"
