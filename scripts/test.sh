#!/usr/bin/env bash
# `npm test`: set up what is missing (npm dependencies, QEMU, the shells and the ssh client the tests run, the
# demo guest, the Debian test guest), then typecheck, lint, and run
# every tier (unit, property, cli, qemu: see vitest.config.ts) with coverage of src/, the qvm child processes
# included, and print the coverage totals. The QEMU tests start real qemu-system-x86_64 processes; they never
# skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_node_modules
ensure_qemu
ensure_shells
ensure_ssh_client
ensure_guest
ensure_debian_guest

echo "qvm: typecheck" >&2
npx tsc -p tsconfig.json --noEmit
echo "qvm: lint" >&2
npx biome check .
echo "qvm: tests" >&2
rm -rf coverage
# Every node child of the tests (bin/qvm.js above all) writes its V8 coverage here (test/helpers/child-coverage.ts).
export QVM_CHILD_COVERAGE="$PWD/coverage/children"
mkdir -p "$QVM_CHILD_COVERAGE"
npx vitest run --coverage "$@"
node scripts/coverage.mjs
