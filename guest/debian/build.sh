#!/usr/bin/env bash
# Build the Debian 12 (bookworm) test guest: a qcow2 image with systemd,
# cloud-init, OpenSSH and qemu-guest-agent, plus its own kernel and initrd for
# direct kernel boot. See guest/debian/README.md.
#
# Usage: guest/debian/build.sh     (from any directory; builds need root)
# Env:   QVM_TEST_CACHE=DIR        cache root (default: $HOME/.cache/qvm-test);
#                                  the guest goes to DIR/debian-12/
#        QVM_DEBIAN_MIRROR=URL     Debian mirror (default: http://deb.debian.org/debian)
#        QVM_DEBIAN_SECURITY=URL   security mirror (default: http://deb.debian.org/debian-security)
#        QVM_GUEST_FORCE=1         rebuild even if the cache stamp matches
#
# Prints the paths of debian-12.qcow2, vmlinuz and initrd.img on stdout, one
# per line. SHA256SUMS and SHA512SUMS next to them hold their digests.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
CACHE_ROOT=${QVM_TEST_CACHE:-${HOME:?HOME is not set; set QVM_TEST_CACHE}/.cache/qvm-test}
[[ $CACHE_ROOT == /* ]] || CACHE_ROOT=$PWD/$CACHE_ROOT
OUT_DIR=$CACHE_ROOT/debian-12
MIRROR=${QVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${QVM_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

SUITE=bookworm
# The virtual size of the image. Only the used blocks take space in the qcow2,
# and cloud-init's resizefs grows the filesystem when an overlay is bigger.
IMAGE_SIZE=3G
# The generic kernel, not linux-image-cloud-amd64: the cloud kernel has no
# 9p/virtio-9p, which qvm's `mounts:` need. systemd-sysv..locales are what
# qvm's image/cloudInit/ssh/agent features talk to; the rest are small and
# make the guest usable: udev (device units, so the agent starts when its
# port appears), util-linux-extra (hwclock: without /sbin/hwclock the agent
# refuses guest-set-time altogether), iproute2 and procps (ip, ps).
PACKAGES=(systemd-sysv dbus cloud-init openssh-server qemu-guest-agent ifupdown
	isc-dhcp-client sudo e2fsprogs locales linux-image-amd64
	udev util-linux-extra iproute2 procps)
# No documentation, man pages or translations: a third of a minimal system.
DPKG_EXCLUDES=(
	'path-exclude=/usr/share/doc/*'
	'path-include=/usr/share/doc/*/copyright'
	'path-exclude=/usr/share/man/*'
	'path-exclude=/usr/share/info/*'
	'path-exclude=/usr/share/locale/*'
	'path-include=/usr/share/locale/locale.alias'
	'path-exclude=/usr/share/lintian/*'
	'path-exclude=/usr/share/linda/*'
)

QCOW2=debian-12.qcow2
OUTPUTS=("$QCOW2" vmlinuz initrd.img SHA256SUMS SHA512SUMS)

log() { printf 'qvm-debian-build: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

print_outputs() {
	printf '%s\n' "$OUT_DIR/$QCOW2" "$OUT_DIR/vmlinuz" "$OUT_DIR/initrd.img"
}

# Multi-GB images and throwaway VM disks have no place in a git checkout.
case $(realpath -m -- "$OUT_DIR")/ in
"$REPO_DIR"/*) die "the cache $OUT_DIR is inside the repository $REPO_DIR; point QVM_TEST_CACHE elsewhere" ;;
esac

# The key covers our own inputs (this script and the mirrors it is told to
# use), not what the mirror ships today: a point release must not force a
# rebuild. QVM_GUEST_FORCE=1 picks up newer packages.
build_hash=$({
	cat -- "${BASH_SOURCE[0]}"
	printf '%s\n' "$MIRROR" "$SECURITY"
} | sha256sum | cut -d' ' -f1)
STAMP=$OUT_DIR/.build-stamp

cache_valid() {
	[[ ${QVM_GUEST_FORCE:-0} != 1 && -f $STAMP ]] || return 1
	[[ $(head -n1 -- "$STAMP") == "$build_hash" ]] || return 1
	local f
	for f in "${OUTPUTS[@]}"; do
		[[ -s $OUT_DIR/$f ]] || return 1
	done
}

if cache_valid; then
	print_outputs
	exit 0
fi

mkdir -p -- "$OUT_DIR"

# Test runners may call us in parallel; the losers wait for the winner and
# then use its result. A build takes minutes, so say why we are waiting.
command -v flock >/dev/null 2>&1 || die "flock is missing (package util-linux)"
exec {lock_fd}>"$OUT_DIR/.build-lock"
if ! flock -n "$lock_fd"; then
	log "another build holds $OUT_DIR/.build-lock; waiting for it"
	flock "$lock_fd"
fi
if cache_valid; then
	print_outputs
	exit 0
fi

is_root() { [[ $(id -u) == 0 ]]; }

# The rootfs is built by mmdebstrap in root mode, and mke2fs -d copies file
# ownership as it finds it, so the build needs real root.
is_root || die "building the Debian guest needs root (mmdebstrap, and root-owned files for mke2fs -d); run: sudo QVM_TEST_CACHE=$CACHE_ROOT $0"

if ! command -v mmdebstrap >/dev/null 2>&1; then
	command -v apt-get >/dev/null 2>&1 ||
		die "mmdebstrap is missing and there is no apt-get to install it; install mmdebstrap (Debian/Ubuntu package) first"
	log "installing mmdebstrap with apt-get"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >&2; then
		log "apt-get install failed; running apt-get update once and retrying"
		DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || log "apt-get update reported errors; trying anyway"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >&2 ||
			die "could not install mmdebstrap; run: apt-get install -y --no-install-recommends mmdebstrap"
	fi
fi
missing=()
for tool in mmdebstrap mke2fs qemu-img unshare sha256sum sha512sum realpath findmnt; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	die "missing tools: ${missing[*]}; install them first (Debian packages: mmdebstrap e2fsprogs qemu-utils util-linux coreutils)"
fi

# A work dir under unshare'd mmdebstrap may hold mounts (proc, sys, dev) while
# that process is alive; never delete through one. rm --one-file-system is the
# second line of defence.
safe_rm_tree() {
	local dir=$1
	[[ -e $dir ]] || return 0
	if findmnt -rn -o TARGET | grep -qF -- "$dir"; then
		log "not deleting $dir: something is mounted under it (findmnt | grep $dir)"
		return 1
	fi
	rm -rf --one-file-system -- "$dir"
}

# Leftovers of a build that was killed (we hold the lock, so no build is
# running; an orphaned mmdebstrap would have inherited and still hold it).
for old in "$OUT_DIR"/.work.*; do
	[[ -e $old ]] || continue
	log "removing leftovers of an interrupted build: $old"
	safe_rm_tree "$old" || die "remove $old by hand once nothing is mounted under it"
done
rm -f -- "$OUT_DIR"/.*.tmp.*

# The work dir is on the same filesystem as the outputs, so the final renames
# are atomic.
WORK=$(mktemp -d "$OUT_DIR/.work.XXXXXX")
cleanup() {
	safe_rm_tree "$WORK" || log "left $WORK behind"
	rm -f -- "$OUT_DIR"/.*.tmp.$$
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ROOTFS=$WORK/rootfs
started=$SECONDS

# --- root filesystem ---
# Set before the kernel's postinst runs update-initramfs: there is no swap to
# resume from (saves a blkid scan and a warning). MODULES=most (the default)
# keeps virtio, SCSI, IDE and NVMe disk drivers in the initrd, so the image
# boots however the disk is attached.
initramfs_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo RESUME=none >"$1/etc/initramfs-tools/conf.d/resume"'
mm_args=(
	--mode=root --variant=apt --format=directory
	--include="$(
		IFS=,
		echo "${PACKAGES[*]}"
	)"
	--aptopt='Acquire::Retries "3"'
	--aptopt='APT::Install-Recommends "false"'
	--essential-hook="$initramfs_hook"
)
for opt in "${DPKG_EXCLUDES[@]}"; do
	mm_args+=(--dpkgopt="$opt")
done
log "building the $SUITE root filesystem with mmdebstrap (a few minutes; downloads ~150 MB from $MIRROR)"
# A private mount namespace: whatever mmdebstrap mounts in the chroot goes
# away with it, even if we are killed, so no mounts outlive the build.
LC_ALL=C.UTF-8 unshare --mount --propagation private -- \
	mmdebstrap "${mm_args[@]}" "$SUITE" "$ROOTFS" \
	"deb $MIRROR $SUITE main" \
	"deb $MIRROR $SUITE-updates main" \
	"deb $SECURITY $SUITE-security main" >&2 ||
	die "mmdebstrap failed (see above); check that $MIRROR is reachable"

# --- make it a guest of any VM, not of this host ---
log "configuring the image"
# Everything below edits $ROOTFS; make sure it is the new tree, never the host.
[[ $(realpath -- "$ROOTFS") == "$WORK/rootfs" && -x $ROOTFS/usr/bin/dpkg ]] ||
	die "mmdebstrap left no root filesystem in $ROOTFS"
echo debian >"$ROOTFS/etc/hostname"
cat >"$ROOTFS/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	debian
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# The kernel mounts / read-write (`rw` on its command line); the label works
# whatever the disk is called.
printf 'LABEL=root\t/\text4\terrors=remount-ro\t0\t1\n' >"$ROOTFS/etc/fstab"
# dhclient writes this when the network comes up; the host's copy is wrong
# in a VM.
rm -f -- "$ROOTFS/etc/resolv.conf"
# An empty machine-id: systemd makes a new one at first boot, so every VM of
# this image has its own (and first-boot presets do not run again).
rm -f -- "$ROOTFS/etc/machine-id" "$ROOTFS/var/lib/dbus/machine-id"
: >"$ROOTFS/etc/machine-id"
# No host keys baked in: cloud-init writes the ones given in user-data
# (ssh_keys) or generates new ones. Booted without cloud-init, sshd makes its
# own before it starts rather than fail.
rm -f -- "$ROOTFS"/etc/ssh/ssh_host_*
mkdir -p "$ROOTFS/etc/systemd/system/ssh.service.d"
cat >"$ROOTFS/etc/systemd/system/ssh.service.d/qvm-host-keys.conf" <<'EOF'
# qvm test image: no host keys are baked in. cloud-init normally provides them
# (it runs before ssh.service); without cloud-init, generate them here.
[Service]
ExecStartPre=/bin/sh -c 'ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A'
EOF
echo 'LANG=C.UTF-8' >"$ROOTFS/etc/default/locale"
# The agent's unit is static: udev's 60-qemu-guest-agent.rules pulls it in
# (SYSTEMD_WANTS) when the org.qemu.guest_agent.0 port appears. Its default
# dependencies still hold it back until sysinit.target, which waits for
# cloud-init's network stage (about 40 s into a TCG boot); it needs nothing
# from there, so start it as soon as the port and the root filesystem are up.
mkdir -p "$ROOTFS/etc/systemd/system/qemu-guest-agent.service.d"
cat >"$ROOTFS/etc/systemd/system/qemu-guest-agent.service.d/qvm-early.conf" <<'UNIT'
# qvm test image: answer the host as early as possible in the boot.
[Unit]
DefaultDependencies=no
After=local-fs.target systemd-tmpfiles-setup.service
Conflicts=shutdown.target
Before=shutdown.target
UNIT
# Periodic jobs compete with the tests for the guest's only (emulated) CPU:
# e2scrub_reap alone takes 20 s of a TCG boot. apt still works by hand.
# (--root is never empty here: ROOTFS is set and checked above.)
systemctl --root="$ROOTFS" --quiet mask e2scrub_reap.service e2scrub_all.timer
systemctl --root="$ROOTFS" --quiet disable apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer
# cloud-init: keep /etc/hosts in step with the hostname from meta-data (else
# sudo warns "unable to resolve host"), and skip grub-dpkg (no GRUB here;
# it costs 4 s of TCG time). User-data can override both.
cat >"$ROOTFS/etc/cloud/cloud.cfg.d/90_qvm.cfg" <<'CFG'
# qvm test image
manage_etc_hosts: true
grub_dpkg:
  enabled: false
CFG
# The console is the serial port; keep systemd's status lines off it past
# errors so a boot log stays readable, and do not wait 90 s for a stuck unit.
mkdir -p "$ROOTFS/etc/systemd/system.conf.d"
cat >"$ROOTFS/etc/systemd/system.conf.d/qvm.conf" <<'EOF'
[Manager]
DefaultTimeoutStartSec=60s
DefaultTimeoutStopSec=15s
EOF
# Package caches, lists and logs of the build.
rm -rf -- "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log \
	"$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*

# --- checks: what qvm relies on must be there ---
KERNELS=("$ROOTFS"/boot/vmlinuz-*)
INITRDS=("$ROOTFS"/boot/initrd.img-*)
[[ ${#KERNELS[@]} == 1 && -f ${KERNELS[0]} ]] || die "expected one kernel in /boot, found: ${KERNELS[*]}"
KVER=${KERNELS[0]##*/vmlinuz-}
[[ -f $ROOTFS/boot/initrd.img-$KVER ]] || die "no /boot/initrd.img-$KVER (initramfs-tools did not run?); found: ${INITRDS[*]}"
modules=$ROOTFS/lib/modules/$KVER
for mod in 9p 9pnet_virtio virtio_blk virtio_net virtio_console vfat; do
	find "$modules" -name "$mod.ko*" -print -quit | grep -q . ||
		grep -q "/$mod.ko" "$modules/modules.builtin" ||
		die "kernel $KVER has no $mod module"
done
# Debian's cloud-init sets no datasource_list, so both the generator
# (ds-identify) and cloud-init use their built-in lists; NoCloud must be in
# both, and no configuration file may narrow them without it.
grep -q '^DI_DSLIST_DEFAULT=.*NoCloud' "$ROOTFS/usr/lib/cloud-init/ds-identify" ||
	die "ds-identify's default datasource list has no NoCloud"
grep -q '"NoCloud",' "$ROOTFS/usr/lib/python3/dist-packages/cloudinit/settings.py" ||
	die "cloud-init's built-in datasource_list has no NoCloud"
if grep -hs '^ *datasource_list *:' "$ROOTFS/etc/cloud/cloud.cfg" "$ROOTFS"/etc/cloud/cloud.cfg.d/*.cfg | grep -qv NoCloud; then
	die "a file in /etc/cloud sets a datasource_list without NoCloud"
fi
[[ -x $ROOTFS/usr/sbin/hwclock ]] || die "no hwclock in the image (util-linux-extra)"
[[ -x $ROOTFS/usr/sbin/qemu-ga ]] || die "no qemu-ga in the image"
version_of() { dpkg-query --admindir="$ROOTFS/var/lib/dpkg" -W -f '${Version}' "$1"; }
KERNEL_VERSION=$(version_of "linux-image-$KVER")
CLOUD_INIT_VERSION=$(version_of cloud-init)
QGA_VERSION=$(version_of qemu-guest-agent)
SYSTEMD_VERSION=$(version_of systemd)
cp -- "$ROOTFS/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp -- "$ROOTFS/boot/initrd.img-$KVER" "$WORK/initrd.img"
rootfs_mib=$(du -sm --one-file-system -- "$ROOTFS" | cut -f1)

# --- ext4 image, no loop mount, then qcow2 ---
log "making the ext4 filesystem ($rootfs_mib MiB of files, $IMAGE_SIZE virtual)"
# Inode tables and journal are written (zeros) now rather than lazily: the
# guest's ext4lazyinit would otherwise write them into every VM's overlay.
mke2fs -q -t ext4 -L root -d "$ROOTFS" -E lazy_itable_init=0,lazy_journal_init=0 \
	-F "$WORK/root.ext4" "$IMAGE_SIZE" >&2 || die "mke2fs -d failed"
safe_rm_tree "$ROOTFS" || die "could not remove $ROOTFS"
log "converting to a compressed qcow2"
# zstd-compressed clusters: about half the size of uncompressed, and cheaper
# to read back than zlib. Overlays (qemu-img create -b) work as usual.
qemu-img convert -q -c -O qcow2 -o compression_type=zstd -f raw "$WORK/root.ext4" "$WORK/$QCOW2" ||
	die "qemu-img convert failed"
rm -f -- "$WORK/root.ext4"

(cd "$WORK" && sha256sum -- "$QCOW2" vmlinuz initrd.img >SHA256SUMS && sha512sum -- "$QCOW2" vmlinuz initrd.img >SHA512SUMS)
qcow2_sha256=$(cut -d' ' -f1 <(grep -F " $QCOW2" "$WORK/SHA256SUMS"))
qcow2_sha512=$(cut -d' ' -f1 <(grep -F " $QCOW2" "$WORK/SHA512SUMS"))
[[ -n $qcow2_sha256 && -n $qcow2_sha512 ]] || die "could not compute the image's digests"

# --- install atomically ---
# Invalidate the stamp first and write it last: an interrupted install never
# looks valid, and each file appears by rename(2), never half-written.
rm -f -- "$STAMP"
for f in "${OUTPUTS[@]}"; do
	mv -f -- "$WORK/$f" "$OUT_DIR/$f"
done
{
	printf '%s\n' "$build_hash"
	printf 'qcow2_sha256=%s\n' "$qcow2_sha256"
	printf 'qcow2_sha512=%s\n' "$qcow2_sha512"
	printf 'virtual_size=%s\n' "$IMAGE_SIZE"
	printf 'kernel=linux-image-%s %s\n' "$KVER" "$KERNEL_VERSION"
	printf 'cloud_init=%s\n' "$CLOUD_INIT_VERSION"
	printf 'qemu_guest_agent=%s\n' "$QGA_VERSION"
	printf 'systemd=%s\n' "$SYSTEMD_VERSION"
	# By label: /dev/vda is only the root disk while it is the first virtio-blk
	# device in PCI order, and a -device added before it takes that place.
	printf 'append=root=LABEL=root rw console=ttyS0\n'
	printf 'built=%s in %ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - started))"
} >"$OUT_DIR/.build-stamp.tmp.$$"
mv -f -- "$OUT_DIR/.build-stamp.tmp.$$" "$STAMP"

log "built $QCOW2 ($(du -h -- "$OUT_DIR/$QCOW2" | cut -f1), $IMAGE_SIZE virtual), kernel $KVER, in $((SECONDS - started)) s"
print_outputs
