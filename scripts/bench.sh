#!/usr/bin/env bash
# `npm run bench [-- NAME...]`: runs the benchmarks in bench/ (all, or the ones named) against real QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_node_modules
ensure_qemu
# The classic-method baseline needs socat.
if ! command -v socat >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat >/dev/null
  else
    echo "qvm: the monitor benchmark compares against socat; install it with: sudo apt-get install -y socat" >&2
    exit 1
  fi
fi
npx tsc -p tsconfig.build.json
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(monitor apply watch warm watch-memory)
for name in "${names[@]}"; do
  echo "## bench/${name}.ts" >&2
  npx tsx "bench/${name}.ts"
done
