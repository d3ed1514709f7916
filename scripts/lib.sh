# Shared set-up steps for the scripts in this folder. Each step is idempotent and fast when already done.

# npm dependencies: installed from the lockfile when missing or older than it.
ensure_node_modules() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "qvm: installing npm dependencies (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

# install_missing WHY PACKAGE...: installs Debian packages when we are root (the package lists are refreshed
# only if the first try fails); otherwise prints the exact command to run and fails. WHY says who needs them.
install_missing() {
  local why=$1
  shift
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "qvm: installing $* from Debian's packages ($why)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
  else
    echo "qvm: missing $* ($why). Install with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends $*" >&2
    return 1
  fi
}

# QEMU from Debian's packages, and cpio for packing the demo guest's initramfs.
ensure_qemu() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
  command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
  command -v cpio >/dev/null 2>&1 || missing+=(cpio)
  install_missing "QEMU and the demo guest's build" "${missing[@]}"
}

# zsh and fish, for the completion tests (`qvm completion zsh|fish` is checked by the shells themselves).
ensure_shells() {
  local missing=()
  command -v zsh >/dev/null 2>&1 || missing+=(zsh)
  command -v fish >/dev/null 2>&1 || missing+=(fish)
  install_missing "the completion tests run them" "${missing[@]}"
}

# The demo guest (kernel + initramfs), built once and cached in guest/out/.
ensure_guest() {
  bash guest/build.sh >/dev/null
}

# The Debian 12 test guest (qcow2 image, kernel, initrd), built once per machine into
# ${QVM_TEST_CACHE:-$HOME/.cache/qvm-test}/debian-12/, outside the repository. A few minutes cold (mmdebstrap
# from Debian's mirror, needs root), about 20 ms when cached. See guest/debian/README.md.
ensure_debian_guest() {
  bash guest/debian/build.sh >/dev/null
}

# qvm ssh/cp and the ssh readiness probe use the system's OpenSSH client.
ensure_ssh_client() {
  local missing=()
  { command -v ssh && command -v scp && command -v ssh-keygen; } >/dev/null 2>&1 || missing+=(openssh-client)
  install_missing "qvm ssh, qvm cp and the ssh readiness probe use it" "${missing[@]}"
}
