import { describe, expect, it } from 'vitest';
import {
  formatDuration,
  formatMemory,
  formatSize,
  parseDuration,
  parseMemoryMiB,
  parseSize,
} from '../../src/model/units.js';

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['3', 3000],
    ['0.5', 500],
    ['1.5s', 1500],
    [10, 10_000],
    [0.25, 250],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'ms', '-1s', '1d', '30 s', '1e3', 's30'])('rejects %j', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
  it('rejects negative and non-finite numbers', () => {
    expect(parseDuration(-1)).toBeUndefined();
    expect(parseDuration(Number.POSITIVE_INFINITY)).toBeUndefined();
  });

  it.each([
    [250, '250ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [90_000, '1m30s'],
    [3_600_000, '1h'],
  ])('formats %d ms as %s', (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe('sizes', () => {
  it.each([
    ['64M', 64 * 2 ** 20],
    ['8G', 8 * 2 ** 30],
    ['1T', 2 ** 40],
    ['512K', 512 * 1024],
  ])('%s is %d bytes', (text, bytes) => expect(parseSize(text)).toBe(bytes));
  it.each(['8', '8g', '8GB', '0G', '08G', '1.5G', 'G'])('rejects %j', (text) =>
    expect(parseSize(text)).toBeUndefined(),
  );
  it('reads memory as MiB: a size, or a plain integer', () => {
    expect(parseMemoryMiB('512M')).toBe(512);
    expect(parseMemoryMiB('1G')).toBe(1024);
    expect(parseMemoryMiB(768)).toBe(768);
    expect(parseMemoryMiB('1536K')).toBe(2);
    expect(parseMemoryMiB(0)).toBeUndefined();
  });
  it('formats sizes exactly', () => {
    expect(formatSize(8 * 2 ** 30)).toBe('8G');
    expect(formatSize(1536 * 2 ** 20)).toBe('1536M');
    expect(formatSize(1000)).toBe('1000');
    expect(formatMemory(1024)).toBe('1G');
    expect(formatMemory(512)).toBe('512M');
  });
});
