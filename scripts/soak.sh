#!/usr/bin/env bash
# `npm run test:soak`: the long runs that `npm test` leaves out. The property tests with 10,000 cases each
# (QVM_FUZZ_RUNS), then the soak test against real QEMU (test/soak, vitest.soak.config.ts): qvm watch over 10
# VMs of the demo guest while a driver kills, edits, freezes and kills watch itself. Its counts are written to
# test/soak/results/soak.json. QVM_SOAK_KILLS (default 100) sets how many QEMUs it kills.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_node_modules
ensure_qemu
ensure_guest

echo "qvm: property tests, ${QVM_FUZZ_RUNS:=10000} runs each" >&2
QVM_FUZZ_RUNS="$QVM_FUZZ_RUNS" npx vitest run --project property
echo "qvm: soak test against real QEMU" >&2
npx vitest run -c vitest.soak.config.ts "$@"
