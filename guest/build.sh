#!/usr/bin/env bash
# Build the tiny qvm test/demo guest: a Debian cloud kernel plus a busybox
# initramfs that serves HTTP on port 80. See guest/README.md.
#
# Usage: guest/build.sh            (from any directory)
# Env:   QVM_GUEST_OUT=DIR         output directory (default: guest/out)
#        QVM_GUEST_FORCE=1         rebuild even if the cache stamp matches
#
# Outputs DIR/vmlinuz and DIR/initrd.gz, and prints their paths on stdout.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
OUT_DIR=${QVM_GUEST_OUT:-$SCRIPT_DIR/out}
# Absolute, so the paths we print mean the same thing whatever the caller's cwd.
[[ $OUT_DIR == /* ]] || OUT_DIR=$PWD/$OUT_DIR
INIT_SCRIPT=$SCRIPT_DIR/init
KERNEL_META=linux-image-cloud-amd64
KERNEL_PKG=

# Load order matters: there is no modules.dep in the initramfs, so /init
# insmods these in exactly this order (dependencies first). button + evdev
# are what let busybox acpid see the ACPI power button (QEMU system_powerdown).
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
	virtio_pci failover net_failover virtio_net virtio_blk button evdev)
# Without these the guest is useless; the rest are nice to have. virtio_blk
# gives the guest its disk (/dev/vda), which the tests write through CGIs.
REQUIRED_MODULES=(virtio_net virtio_blk)

log() { printf 'qvm-guest-build: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

print_outputs() {
	printf '%s\n' "$OUT_DIR/vmlinuz" "$OUT_DIR/initrd.gz"
}

[[ -f $INIT_SCRIPT ]] || die "missing $INIT_SCRIPT"

# The cache key covers only our own inputs, not the kernel version Debian
# currently ships: a rebuild must not be forced (and need the network) just
# because a point release came out. QVM_GUEST_FORCE=1 picks up a new kernel.
build_hash=$(cat -- "${BASH_SOURCE[0]}" "$INIT_SCRIPT" | sha256sum | cut -d' ' -f1)
STAMP=$OUT_DIR/.build-stamp

cache_valid() {
	[[ ${QVM_GUEST_FORCE:-0} != 1 ]] &&
		[[ -s $OUT_DIR/vmlinuz && -s $OUT_DIR/initrd.gz && -f $STAMP ]] &&
		[[ $(head -n1 -- "$STAMP") == "$build_hash" ]]
}

if cache_valid; then
	print_outputs
	exit 0
fi

mkdir -p -- "$OUT_DIR"

# Parallel test runners may all call us at once; serialise them and let the
# losers find the winner's cache instead of downloading the kernel again.
if command -v flock >/dev/null 2>&1; then
	exec {lock_fd}>"$OUT_DIR/.build-lock"
	flock "$lock_fd"
	if cache_valid; then
		print_outputs
		exit 0
	fi
fi

# Leftovers of a build that was SIGKILLed mid-install (we hold the lock now).
rm -f -- "$OUT_DIR"/.vmlinuz.tmp.* "$OUT_DIR"/.initrd.gz.tmp.* "$OUT_DIR"/.build-stamp.tmp.*

missing=()
for tool in apt-get apt-cache dpkg-deb cpio gzip sha256sum find sort; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	die "missing tools: ${missing[*]}; install them first (Debian/Ubuntu packages: apt dpkg cpio gzip coreutils findutils)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qvm-guest-build.XXXXXX")
cleanup() {
	rm -rf -- "$WORK"
	# Partially copied outputs are only ever under temporary names.
	rm -f -- "$OUT_DIR"/.vmlinuz.tmp.$$ "$OUT_DIR"/.initrd.gz.tmp.$$ "$OUT_DIR"/.build-stamp.tmp.$$
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_root() { [[ $(id -u) == 0 ]]; }

# apt refuses to sandbox downloads as _apt into a directory _apt cannot write
# (our mktemp dir is 0700) and warns; as root, just say so up front.
APT_OPTS=(-q)
if is_root; then
	APT_OPTS+=(-o APT::Sandbox::User=root)
fi

# Resolve the kernel package and download both .debs into the cwd. Returns
# non-zero instead of dying so that the caller can refresh apt lists and retry.
fetch_debs() {
	# The metapackage tracks the current ABI; ask it only for the real versioned
	# package name, which is what actually contains the kernel.
	log "resolving $KERNEL_META"
	apt-cache depends "$KERNEL_META" >"$WORK/depends" 2>&1 || {
		cat "$WORK/depends" >&2
		return 1
	}
	KERNEL_PKG=$(sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' "$WORK/depends" | head -n1)
	if [[ -z $KERNEL_PKG ]]; then
		log "no versioned kernel in 'apt-cache depends $KERNEL_META':"
		cat "$WORK/depends" >&2
		return 1
	fi
	log "downloading $KERNEL_PKG and busybox-static"
	rm -f ./*.deb
	apt-get "${APT_OPTS[@]}" download "$KERNEL_PKG" busybox-static >&2
}

mkdir -p "$WORK/debs" "$WORK/kernel" "$WORK/busybox" "$WORK/root"
# apt-get download writes into the cwd; every path from here on is absolute.
cd "$WORK/debs"
# A failure here is most likely missing package lists (fresh container) or
# stale ones (the kernel ABI named by the old lists has left the mirror);
# refreshing them once fixes both, but only root may do that.
if ! fetch_debs; then
	is_root || die "could not resolve/download packages, probably because apt package lists are missing or stale; run: sudo apt-get update"
	log "running apt-get update once and retrying"
	apt-get -q update >&2 || die "apt-get update failed"
	fetch_debs || die "could not resolve/download $KERNEL_META and busybox-static even after apt-get update"
fi
KVER=${KERNEL_PKG#linux-image-}

kernel_deb=$(find "$WORK/debs" -maxdepth 1 -name "${KERNEL_PKG}_*.deb" | head -n1)
busybox_deb=$(find "$WORK/debs" -maxdepth 1 -name 'busybox-static_*.deb' | head -n1)
[[ -n $kernel_deb && -n $busybox_deb ]] || die "downloaded .deb files not found in $WORK/debs"
KERNEL_DEB_VERSION=$(dpkg-deb -f "$kernel_deb" Version)
BUSYBOX_DEB_VERSION=$(dpkg-deb -f "$busybox_deb" Version)

log "unpacking $KERNEL_PKG $KERNEL_DEB_VERSION"
dpkg-deb -x "$kernel_deb" "$WORK/kernel"
dpkg-deb -x "$busybox_deb" "$WORK/busybox"

VMLINUZ=$WORK/kernel/boot/vmlinuz-$KVER
[[ -f $VMLINUZ ]] || die "$KERNEL_PKG has no boot/vmlinuz-$KVER"
# bookworm ships modules under /lib, later releases under /usr/lib.
MODDIR=
for d in "$WORK/kernel/lib/modules/$KVER" "$WORK/kernel/usr/lib/modules/$KVER"; do
	[[ -d $d ]] && MODDIR=$d && break
done
[[ -n $MODDIR ]] || die "$KERNEL_PKG has no lib/modules/$KVER"

BUSYBOX=$WORK/busybox/bin/busybox
[[ -x $BUSYBOX ]] || BUSYBOX=$WORK/busybox/usr/bin/busybox
[[ -x $BUSYBOX ]] || die "busybox-static has no busybox binary"

# --- initramfs tree ---
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,var/log,lib/modules/qvm}
install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
# Symlinks made at build time (rather than `busybox --install` at boot) so that
# /init's #!/bin/sh and every applet already resolve when the kernel starts it.
# The static busybox is an x86-64 binary, runnable here to list its applets.
while IFS= read -r applet; do
	applet=${applet#/}
	case $applet in
	'' | linuxrc | bin/busybox) continue ;;
	esac
	mkdir -p "$ROOT/$(dirname -- "$applet")"
	[[ -e $ROOT/$applet || -L $ROOT/$applet ]] || ln -s /bin/busybox "$ROOT/$applet"
done < <("$BUSYBOX" --list-full)
[[ -L $ROOT/bin/sh && -L $ROOT/sbin/init ]] || die "busybox lacks sh or init applets"
install -m 0755 "$INIT_SCRIPT" "$ROOT/init"

# Copy modules under NN-name.ko so that /init's glob order is the load order.
n=0
for mod in "${MODULES[@]}"; do
	n=$((n + 1))
	# Kernel module names use _ but files may use - (and vice versa).
	src=$(find "$MODDIR/kernel" \( -name "$mod.ko*" -o -name "${mod//_/-}.ko*" \) -print -quit)
	dst=$ROOT/lib/modules/qvm/$(printf '%02d' "$n")-$mod.ko
	if [[ -z $src ]]; then
		if grep -Eq "/(${mod}|${mod//_/-})\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then
			log "module $mod is built into $KVER; skipping"
			continue
		fi
		for req in "${REQUIRED_MODULES[@]}"; do
			[[ $req == "$mod" ]] && die "module $mod is neither a file nor built into $KVER"
		done
		log "warning: module $mod not found in $KVER; skipping"
		continue
	fi
	# busybox insmod passes the file straight to init_module(2), which wants an
	# uncompressed ELF, so decompress here (Debian kernels after bookworm ship .ko.xz).
	case $src in
	*.ko) cp -- "$src" "$dst" ;;
	*.ko.xz) command -v xz >/dev/null || die "xz needed to decompress $src"
		xz -dc -- "$src" >"$dst" ;;
	*.ko.zst) command -v zstd >/dev/null || die "zstd needed to decompress $src"
		zstd -qdc -- "$src" >"$dst" ;;
	*.ko.gz) gzip -dc -- "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
done

# e1000 (pc) and e1000e (q35) are the NICs QEMU gives a guest by default;
# record whether this kernel could drive them, since if not, callers must ask
# for virtio-net-pci explicitly. (The bookworm cloud kernel has neither.)
nic_support=
for nic in E1000 E1000E; do
	state=absent
	grep -q "^CONFIG_${nic}=[ym]" "$WORK/kernel/boot/config-$KVER" 2>/dev/null && state=present
	nic_support+="${nic,,}=$state "
done

# --- pack ---
log "packing initramfs"
# Sorted, root-owned, fixed-mtime entries with renumbered inodes make the
# archive byte-identical across hosts, users and runs for the same inputs.
find "$ROOT" -exec touch -h -d @0 {} +
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
	cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
	gzip -9 -n >"$WORK/initrd.gz"

# --- install atomically ---
# Invalidate the stamp first and write it last: an interrupted install then
# never looks valid, and each file appears via rename(2), never half-written.
rm -f -- "$STAMP"
cp -- "$VMLINUZ" "$OUT_DIR/.vmlinuz.tmp.$$"
cp -- "$WORK/initrd.gz" "$OUT_DIR/.initrd.gz.tmp.$$"
mv -f -- "$OUT_DIR/.vmlinuz.tmp.$$" "$OUT_DIR/vmlinuz"
mv -f -- "$OUT_DIR/.initrd.gz.tmp.$$" "$OUT_DIR/initrd.gz"
{
	printf '%s\n' "$build_hash"
	printf 'kernel=%s %s\n' "$KERNEL_PKG" "$KERNEL_DEB_VERSION"
	printf 'busybox=busybox-static %s\n' "$BUSYBOX_DEB_VERSION"
	printf 'modules=%s\n' "$(cd "$ROOT/lib/modules/qvm" && echo *.ko)"
	printf 'nics: %s\n' "${nic_support% }"
} >"$OUT_DIR/.build-stamp.tmp.$$"
mv -f -- "$OUT_DIR/.build-stamp.tmp.$$" "$STAMP"

log "built $KERNEL_PKG $KERNEL_DEB_VERSION, initrd $(du -h "$OUT_DIR/initrd.gz" | cut -f1)"
print_outputs
