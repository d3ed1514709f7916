/**
 * Durations and sizes as users write them in manifests and flags.
 * Durations: `500ms`, `30s`, `2m`, `1h`, or a plain number of seconds (`3`, `0.5`).
 * Sizes: an integer with a K, M, G or T suffix (binary units, as QEMU reads them).
 */

const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$';
const SIZE_PATTERN = '^[1-9][0-9]*[KMGT]$';

const durationRe = new RegExp(DURATION_PATTERN);
const durationUnitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds for a duration, or undefined when the text is not one. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number')
    return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined;
  const text = value.trim();
  if (!durationRe.test(text)) return undefined;
  const unit = /[a-z]+$/.exec(text)?.[0] ?? 's';
  return Math.round(Number.parseFloat(text) * durationUnitMs[unit]!);
}

/** A duration the way a user would write it back: `500ms`, `30s`, `2m`, `1m30s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) {
    const s = ms / 1000;
    return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
  }
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', s ? `${s}s` : ''].join('') || '0s';
}

const sizeRe = new RegExp(SIZE_PATTERN);
const sizeShift: Record<string, number> = { K: 10, M: 20, G: 30, T: 40 };

/** Bytes for a size such as `64M` or `8G`, or undefined when the text is not one. */
export function parseSize(value: string): number | undefined {
  if (!sizeRe.test(value)) return undefined;
  const unit = value.slice(-1);
  return Number.parseInt(value.slice(0, -1), 10) * 2 ** sizeShift[unit]!;
}

/** Memory is a size, or a plain integer meaning MiB (as `-m 512`). Returns MiB, rounded up. */
export function parseMemoryMiB(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  const bytes = parseSize(value);
  return bytes === undefined ? undefined : Math.ceil(bytes / 2 ** 20);
}

/** The shortest exact way to write a byte count: `8G`, `512M`, `1536K`, or plain bytes. */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    const scale = 2 ** sizeShift[unit]!;
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return `${bytes}`;
}

/** Memory in MiB, the way a manifest writes it: `512M`, `2G`. */
export function formatMemory(mib: number): string {
  return formatSize(mib * 2 ** 20);
}
