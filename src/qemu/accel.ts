/**
 * Whether KVM can really run a guest here, for `accel: auto`.
 *
 * QEMU quirk: an openable /dev/kvm is not enough. Some sandboxes expose a paravirtual KVM (kvm-pvm) on which
 * QEMU starts fine and even runs real-mode code, but a guest hangs as soon as it switches to protected mode:
 * a Linux kernel stops right after "Probing EDD". So qvm boots a 64 KiB firmware image that enters protected
 * mode and writes to QEMU's isa-debug-exit port: QEMU exits with status 3 when that worked, and hangs (the
 * probe's deadline) when it did not. The answer is cached per boot of the host, so the probe runs once.
 */
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QEMU_SYSTEM } from './argv.js';

export interface KvmProbe {
  usable: boolean;
  reason: string;
}

const PROBE_TIMEOUT_MS = 2500;
/** isa-debug-exit turns `out 0xf4, 1` into exit status (1 << 1) | 1. */
const PROBE_SUCCESS_STATUS = 3;

/**
 * The probe firmware: 64 KiB mapped at 0xF0000. The reset vector jumps to F000:0000, which loads a flat GDT,
 * sets CR0.PE, far-jumps into 32-bit code, and writes 1 to port 0xF4.
 */
function probeFirmware(): Buffer {
  const image = Buffer.alloc(65536, 0xf4); // hlt everywhere else
  const put = (offset: number, bytes: number[]) => Buffer.from(bytes).copy(image, offset);
  put(0x00, [0xfa, 0x2e, 0x0f, 0x01, 0x16, 0x40, 0x00]); // cli; lgdt cs:[0x40]
  put(0x07, [0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0]); // mov eax,cr0; or al,1; mov cr0,eax
  put(0x0f, [0x66, 0xea, 0x20, 0x00, 0x0f, 0x00, 0x08, 0x00]); // jmp dword 0x08:0x000F0020
  put(0x20, [0xb0, 0x01, 0xe6, 0xf4, 0xf4]); // mov al,1; out 0xf4,al; hlt
  put(0x30, [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00]); // null, flat code segment
  put(0x40, [0x0f, 0x00, 0x30, 0x00, 0x0f, 0x00]); // GDT descriptor: limit 15, base 0xF0030
  put(0xfff0, [0xea, 0x00, 0x00, 0x00, 0xf0]); // reset vector: jmp F000:0000
  return image;
}

async function probeKvm(): Promise<KvmProbe> {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, reason: 'no read-write access to /dev/kvm' };
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'qvm-kvm-probe-'));
  try {
    const firmware = path.join(dir, 'probe.bin');
    writeFileSync(firmware, probeFirmware());
    const { execa } = await import('execa');
    const result = await execa(
      QEMU_SYSTEM,
      [
        '-accel',
        'kvm',
        '-machine',
        'pc',
        '-nodefaults',
        '-display',
        'none',
        '-bios',
        firmware,
        '-device',
        'isa-debug-exit,iobase=0xf4,iosize=0x04',
      ],
      { reject: false, timeout: PROBE_TIMEOUT_MS, stdin: 'ignore' },
    );
    if (result.exitCode === PROBE_SUCCESS_STATUS)
      return { usable: true, reason: 'KVM ran the protected-mode probe' };
    if (result.timedOut)
      return { usable: false, reason: '/dev/kvm opens, but a KVM guest hangs entering protected mode' };
    const stderr = String(result.stderr).trim().split('\n').at(-1) ?? '';
    return { usable: false, reason: `QEMU could not use KVM: ${stderr || `exit ${result.exitCode}`}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

let inProcess: Promise<KvmProbe> | undefined;

/** The probe's answer, cached in `cacheFile` for this boot of the host (and in memory for this process). */
export function kvmUsable(cacheFile: string | undefined): Promise<KvmProbe> {
  inProcess ??= (async () => {
    const id = bootId();
    if (cacheFile) {
      try {
        const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as KvmProbe & { bootId: string };
        if (cached.bootId === id && typeof cached.usable === 'boolean')
          return { usable: cached.usable, reason: cached.reason };
      } catch {
        // no cache yet
      }
    }
    const probe = await probeKvm();
    if (cacheFile) {
      try {
        writeFileSync(cacheFile, JSON.stringify({ ...probe, bootId: id }), { mode: 0o600 });
      } catch {
        // Not being able to cache only costs a probe next time.
      }
    }
    return probe;
  })();
  return inProcess;
}
