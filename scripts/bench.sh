#!/usr/bin/env bash
# `npm run bench [-- NAME...]`: runs the benchmarks in bench/ against real QEMU, each writing
# bench/results/NAME.json; `npm run bench:report` then regenerates the README's tables from those files.
# Without names it runs the default set. scale (100 VMs), peer-libvirt (installs, configures and starts
# libvirt; needs root) and devenv (Debian cold boots) take several minutes each and run only when named.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DEFAULT=(monitor startup apply watch warm devices watch-memory)
OPT_IN=(scale peer-libvirt devenv)

names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${DEFAULT[@]}")
for name in "${names[@]}"; do
  if [ ! -f "bench/${name}.ts" ]; then
    echo "qvm: no benchmark named ${name}; the benchmarks are: ${DEFAULT[*]} ${OPT_IN[*]}" >&2
    exit 2
  fi
done

ensure_node_modules
ensure_qemu
ensure_guest
# devenv boots the Debian 12 test guest (built once per machine into a cache outside the repository).
for name in "${names[@]}"; do [ "$name" = devenv ] && ensure_debian_guest && ensure_ssh_client; done
# The monitor benchmark's classic recipes need socat and Debian's nc (netcat-openbsd, for nc -U).
missing=()
command -v socat >/dev/null 2>&1 || missing+=(socat)
nc -h 2>&1 | grep -q -- '-U' || missing+=(netcat-openbsd)
install_missing "the monitor benchmark's classic recipes" "${missing[@]}"
npm run --silent build

echo "qvm: benchmarks ${names[*]} (opt-in, when named: ${OPT_IN[*]})" >&2
for name in "${names[@]}"; do
  echo "## bench/${name}.ts" >&2
  npx tsx "bench/${name}.ts"
done
echo "qvm: results in bench/results/; npm run bench:report puts them in README.md" >&2
