#!/usr/bin/env bash
# `npm test`: set up what is missing (npm dependencies, QEMU, the demo guest), then typecheck, lint, and run
# every test. The QEMU tests start real qemu-system-x86_64 processes; they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_node_modules
ensure_qemu
ensure_shells
ensure_guest

echo "qvm: typecheck" >&2
npx tsc -p tsconfig.json --noEmit
echo "qvm: lint" >&2
npx biome check .
echo "qvm: tests" >&2
npx vitest run "$@"
