#!/usr/bin/env bash
# Manual end-to-end check of the Debian test guest against real QEMU, with the
# command lines guest/debian/README.md documents: a vvfat NoCloud seed, SSH with
# strict host key checking (host key injected through cloud-init), the guest
# agent, a virtio-9p mount, savevm refused while it is mounted, savevm/-loadvm,
# the clock after -loadvm, and guest-shutdown. Prints what it measures.
#
# Usage: guest/debian/smoke.sh        (builds the guest first if needed; ~4 min)
# Env:   QVM_SMOKE_MEM=MiB (default 1024), QVM_SMOKE_KEEP=1 keeps the temp dir
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
MEM=${QVM_SMOKE_MEM:-1024}

log() { printf 'qvm-debian-smoke: %s\n' "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}
for tool in qemu-system-x86_64 qemu-img ssh ssh-keygen node timeout; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done

mapfile -t built < <(bash "$SCRIPT_DIR/build.sh")
IMAGE=${built[0]} KERNEL=${built[1]} INITRD=${built[2]}
[[ -s $IMAGE && -s $KERNEL && -s $INITRD ]] || die "build.sh printed no image"

# Short: QEMU's unix socket paths must stay under ~108 bytes.
T=$(mktemp -d /tmp/qvm-smoke.XXXXXX)
QEMU_PID=
cleanup() {
	if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then kill -9 "$QEMU_PID"; fi
	if [[ ${QVM_SMOKE_KEEP:-0} == 1 ]]; then log "kept $T"; else rm -rf -- "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- a QMP/QGA client in Node (no socat or python needed) ---
cat >"$T/mon.mjs" <<'JS'
import net from 'node:net';
const [mode, sock, ...rest] = process.argv.slice(2);
const conn = () => new Promise((ok, fail) => { const s = net.connect(sock); s.once('connect', () => ok(s)); s.once('error', fail); });
// Replies are newline-terminated JSON; the agent puts 0xFF before the reply to guest-sync-delimited.
// next(ms) returns the next reply (events skipped), null once the connection has closed.
function reader(s) {
  let buf = Buffer.alloc(0); let wake = null; let closed = false; const queue = [];
  s.on('data', (d) => { buf = Buffer.concat([buf, d]); let i;
    while ((i = buf.indexOf(10)) >= 0) { const line = buf.subarray(0, i).filter((b) => b !== 0xff).toString().trim(); buf = buf.subarray(i + 1);
      if (line) { const msg = JSON.parse(line); if (!msg.event && !msg.QMP) queue.push(msg); } }
    wake?.(); });
  s.on('close', () => { closed = true; wake?.(); });
  return async (ms = 60000) => { const deadline = Date.now() + ms;
    while (!queue.length) { if (closed) return null; const left = deadline - Date.now(); if (left <= 0) throw new Error('no answer');
      await new Promise((ok) => { wake = ok; setTimeout(ok, left).unref(); }); wake = null; }
    return queue.shift(); };
}
async function qmp(cmds) {
  const s = await conn(); const next = reader(s); const out = [];
  await new Promise((ok) => s.once('data', ok)); // greeting
  for (const c of [{ execute: 'qmp_capabilities' }, ...cmds]) { s.write(`${JSON.stringify(c)}\n`); out.push(await next()); }
  s.destroy(); return out.slice(1);
}
async function qgaSync(s, next, ms) {
  // Resend every second until one is answered. Each 0xFF also earns a parse-error reply, and replies to
  // syncs sent on an earlier connection may still come: skip everything but our own ids.
  const deadline = Date.now() + ms; const ids = new Set();
  for (;;) { const id = Math.floor(Math.random() * 2 ** 31); ids.add(id);
    s.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`)]));
    const until = Date.now() + 1000;
    try { for (;;) { const r = await next(Math.max(1, until - Date.now())); if (r === null) throw new Error('agent socket closed'); if (ids.has(r.return)) return; } }
    catch (e) { if (Date.now() > deadline || e.message === 'agent socket closed') throw e; } }
}
try {
  if (mode === 'hmp') { const [r] = await qmp([{ execute: 'human-monitor-command', arguments: { 'command-line': rest[0] } }]); process.stdout.write(r.return ?? JSON.stringify(r)); }
  else if (mode === 'qmp') { for (const r of await qmp(rest.map((a) => JSON.parse(a)))) console.log(JSON.stringify(r)); }
  else if (mode === 'qgawait') { const t0 = Date.now(); const limit = Number(rest[0]);
    // One client at a time: QEMU serves a second connection only once the first has closed.
    for (;;) { let s; try { s = await conn(); await qgaSync(s, reader(s), 3000); console.log(((Date.now() - t0) / 1000).toFixed(1)); break; }
      catch { if (Date.now() - t0 > limit) { console.log('timeout'); process.exitCode = 1; break; } await new Promise((ok) => setTimeout(ok, 500)); }
      finally { s?.destroy(); } } }
  else if (mode === 'qga') { const s = await conn(); const next = reader(s); await qgaSync(s, next, 10000);
    const cmd = JSON.parse(rest[0]); s.write(`${JSON.stringify(cmd)}\n`);
    try { console.log(JSON.stringify(await next(Number(rest[1] ?? 10000)))); } catch (e) { console.log(`no reply (${e.message})`); }
    s.destroy(); }
  else if (mode === 'offset') { const s = await conn(); const next = reader(s); await qgaSync(s, next, 10000);
    const t0 = Date.now(); s.write('{"execute":"guest-get-time"}\n'); const r = await next(); const t1 = Date.now();
    console.log(((r.return / 1e6 - (t0 + t1) / 2) / 1000).toFixed(2)); s.destroy(); }
  else throw new Error(`unknown mode ${mode}`);
} catch (e) { console.error(e.message); process.exitCode = 1; }
JS
mon() { timeout "${MON_TIMEOUT:-60}" node "$T/mon.mjs" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- keys, seed, disk, share ---
ssh-keygen -q -t ed25519 -N '' -C qvm-smoke-user -f "$T/user"
ssh-keygen -q -t ed25519 -N '' -C qvm-smoke-host -f "$T/host"
echo "qvm-smoke ssh-ed25519 $(cut -d' ' -f2 "$T/host.pub")" >"$T/known_hosts"
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
mkdir -p "$T/seed" "$T/share"
printf 'instance-id: qvm-smoke-%s\nlocal-hostname: qvm-smoke\n' "$RANDOM" >"$T/seed/meta-data"
{
	echo '#cloud-config'
	echo 'locale: C.UTF-8'
	echo 'users:'
	echo '  - name: dev'
	echo "    sudo: 'ALL=(ALL) NOPASSWD:ALL'"
	echo '    shell: /bin/bash'
	echo "    ssh_authorized_keys: ['$(cat "$T/user.pub")']"
	echo 'ssh_keys:'
	echo '  ed25519_private: |'
	sed 's/^/    /' "$T/host"
	echo "  ed25519_public: '$(cat "$T/host.pub")'"
	echo 'mounts:'
	echo "  - [work, /mnt/work, 9p, 'trans=virtio,version=9p2000.L,rw,nofail', '0', '0']"
	echo 'runcmd:'
	echo "  - [sh, -c, 'echo QVM-SMOKE-RUNCMD > /dev/ttyS0']"
} >"$T/seed/user-data"
chmod 777 "$T/share"
qemu-img create -q -f qcow2 -b "$IMAGE" -F qcow2 "$T/disk.qcow2" 4G

QEMU_ARGS=(
	-accel tcg -m "$MEM" -smp 1 -display none -no-shutdown
	-kernel "$KERNEL" -initrd "$INITRD" -append 'root=LABEL=root rw console=ttyS0'
	-drive "if=virtio,format=qcow2,file=$T/disk.qcow2"
	-drive "if=virtio,format=raw,readonly=on,file.driver=vvfat,file.dir=$T/seed,file.label=cidata"
	-device virtio-net-pci,netdev=net0 -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$PORT-:22"
	-device virtio-serial -chardev "socket,path=$T/qga.sock,server=on,wait=off,id=qga0"
	-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
	-fsdev "local,id=fs0,path=$T/share,security_model=mapped-xattr"
	-device virtio-9p-pci,fsdev=fs0,mount_tag=work
	-serial "file:$T/serial.log" -qmp "unix:$T/qmp.sock,server=on,wait=off"
	-daemonize -pidfile "$T/qemu.pid"
)
start() {
	qemu-system-x86_64 "${QEMU_ARGS[@]}" "$@" || die "QEMU did not start"
	QEMU_PID=$(cat "$T/qemu.pid")
}
SSH=(ssh -i "$T/user" -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$T/known_hosts" -o HostKeyAlias=qvm-smoke
	-o BatchMode=yes -o ConnectTimeout=3 -o LogLevel=ERROR -p "$PORT" dev@127.0.0.1)
wait_ssh() {
	local t0=$1 limit=$2
	until timeout 8 "${SSH[@]}" true 2>/dev/null; do
		[[ $(since "$t0" | cut -d. -f1) -lt $limit ]] || die "no SSH within $limit s (serial log: $T/serial.log)"
		sleep 0.5
	done
}

# --- cold boot ---
log "cold boot (TCG; 1-2 minutes)"
t0=$(now)
start
agent_at=$(MON_TIMEOUT=250 mon qgawait "$T/qga.sock" 240000) || die "the agent did not answer"
log "agent answers guest-sync-delimited ${agent_at} s after QEMU started"
wait_ssh "$t0" 300
log "ssh (strict host key checking) works $(since "$t0") s after QEMU started"
timeout 200 "${SSH[@]}" 'cloud-init status --wait >/dev/null' || die "cloud-init did not finish"
grep -q QVM-SMOKE-RUNCMD "$T/serial.log" || die "runcmd did not run"
log "cloud-init finished $(since "$t0") s after QEMU started (runcmd ran)"
"${SSH[@]}" 'ip -4 -o addr show scope global' | grep -q 'inet 10.0.2.15/24' || die "no 10.0.2.15 on the guest"

# --- agent ---
mon qga "$T/qga.sock" '{"execute":"guest-ping"}' | grep -q '"return":{}' || die "guest-ping"
mon qga "$T/qga.sock" '{"execute":"guest-network-get-interfaces"}' | grep -q '"10.0.2.15"' || die "guest-network-get-interfaces"
pid=$(mon qga "$T/qga.sock" '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","echo hi; exit 3"],"capture-output":true}}' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
[[ -n $pid ]] || die "guest-exec"
sleep 1
mon qga "$T/qga.sock" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}" | grep -q '"exitcode":3' || die "guest-exec-status"
log "agent: guest-ping, guest-network-get-interfaces, guest-exec + guest-exec-status work"

# --- 9p ---
"${SSH[@]}" 'findmnt -n -t 9p /mnt/work >/dev/null && echo from-guest >/mnt/work/hello.txt' || die "9p share not mounted or not writable"
[[ $(cat "$T/share/hello.txt") == from-guest ]] || die "the guest's file is not on the host"
log "9p: mounted at boot by cloud-init; a file written in the guest is on the host"
refusal=$(mon hmp "$T/qmp.sock" 'savevm s1') || die "savevm: no answer from QMP"
[[ $refusal == *'Migration is disabled when VirtFS export path'* ]] || die "savevm was not refused while 9p is mounted: $refusal"
log "savevm while mounted: ${refusal%%$'\r'*}"
"${SSH[@]}" 'sudo umount /mnt/work'

# --- savevm / -loadvm ---
t1=$(now)
out=$(mon hmp "$T/qmp.sock" 'savevm s1')
[[ -z $out ]] || die "savevm: $out"
log "savevm took $(since "$t1") s; $(mon hmp "$T/qmp.sock" 'info snapshots' | tail -n1 | tr -s ' ')"
mon qmp "$T/qmp.sock" '{"execute":"quit"}' >/dev/null || true
for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
sleep 5
t2=$(now)
start -loadvm s1
log "-loadvm: QEMU daemonized after $(since "$t2") s"
wait_ssh "$t2" 60
log "-loadvm: ssh works $(since "$t2") s after QEMU started"
log "-loadvm: guest clock is $(mon offset "$T/qga.sock") s off the host's"
mon qga "$T/qga.sock" '{"execute":"guest-set-time"}' | grep -q '"return":{}' || die "guest-set-time"
log "after guest-set-time (no argument, from the RTC): $(mon offset "$T/qga.sock") s off"
"${SSH[@]}" 'sudo mount /mnt/work && cat /mnt/work/hello.txt' | grep -q from-guest || die "remount after -loadvm"
log "9p remounts after -loadvm"

# --- shutdown ---
t3=$(now)
mon qga "$T/qga.sock" '{"execute":"guest-shutdown"}' 3000 >/dev/null
until mon qmp "$T/qmp.sock" '{"execute":"query-status"}' | grep -q '"status":"shutdown"'; do
	[[ $(since "$t3" | cut -d. -f1) -lt 60 ]] || die "guest-shutdown: the guest did not power off"
	sleep 0.5
done
log "guest-shutdown: powered off after $(since "$t3") s"
log "all checks passed"
