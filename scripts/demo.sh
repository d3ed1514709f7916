#!/usr/bin/env bash
# `npm run demo`: the quick start on a fresh Debian machine. Sets up what is missing (npm dependencies,
# QEMU, the demo guest), builds qvm, applies examples/demo.yaml, and shows the guest answering on
# http://127.0.0.1:8080/. The VM keeps running afterwards; `npx qvm destroy -f examples/demo.yaml` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_node_modules
ensure_qemu
echo "qvm: building the demo guest (cached after the first time)" >&2
ensure_guest
npm run --silent build

qvm() { node bin/qvm.js "$@"; }

echo
echo "\$ qvm apply -f examples/demo.yaml"
qvm apply -f examples/demo.yaml

echo
echo "\$ curl http://127.0.0.1:8080/"
get() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 1 "$1"
  else
    node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(1000) }).then(async (r) => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); }).catch(() => process.exit(1))' "$1"
  fi
}
# User networking accepts the connection before the guest listens: poll with a short timeout per try.
deadline=$((SECONDS + 60))
until body=$(get http://127.0.0.1:8080/ 2>/dev/null); do
  if [ $SECONDS -ge $deadline ]; then
    echo "qvm: the demo VM did not answer within 60 s; see: node bin/qvm.js logs -f examples/demo.yaml demo" >&2
    exit 1
  fi
  sleep 0.3
done
echo "$body"
echo "\$ curl http://127.0.0.1:8080/cgi-bin/uptime"
get http://127.0.0.1:8080/cgi-bin/uptime

echo
echo "\$ qvm status -f examples/demo.yaml"
qvm status -f examples/demo.yaml
echo
echo "The VM keeps running. Try: node bin/qvm.js plan -f examples/demo.yaml (after editing it),"
echo "node bin/qvm.js console -f examples/demo.yaml demo, or node bin/qvm.js destroy -f examples/demo.yaml."
