// Human-friendly durations and sizes for flags and config ("15m", "4MiB").

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses "250ms", "30s", "15m", "8h" into milliseconds. A unit is required: a bare "5" (is it 5 ms or 5 minutes?)
 * is refused, except 0, which means the same in every unit. A number is accepted only as 0.
 */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (input === 0) return 0;
    throw new Error(
      `invalid duration ${input}: durations carry a unit (e.g. "${input}ms", "${input}s"); a bare number is only allowed as 0`,
    );
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(input);
  if (!m) throw new Error(`invalid duration "${input}": use a number with ms, s, m or h (e.g. 15m)`);
  if (!m[2] && Number(m[1]) !== 0)
    throw new Error(`invalid duration "${input}": say its unit, e.g. ${m[1]}s or ${m[1]}m (ms, s, m, h); only 0 needs none`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Parses "4MiB", "512KiB", "1GiB" (binary units; k/m/g and KB/MB/GB mean the same) into bytes; a unit is required except for 0. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (input === 0) return 0;
    throw new Error(`invalid size ${input}: sizes carry a unit (e.g. "${input}MiB", "${input}B"); a bare number is only allowed as 0`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = SIZE_UNITS[(m?.[2] || 'b').toLowerCase()];
  if (!m || unit === undefined) throw new Error(`invalid size "${input}": use a number with B, KiB, MiB or GiB (e.g. 4MiB)`);
  if (!m[2] && Number(m[1]) !== 0)
    throw new Error(`invalid size "${input}": say its unit, e.g. ${m[1]}MiB or ${m[1]}B (B, KiB, MiB, GiB); only 0 needs none`);
  return Math.floor(Number(m[1]) * unit);
}

/** A size for people: the largest binary unit that divides it. */
export function formatSize(bytes: number): string {
  for (const [unit, n] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return `${bytes}B`;
}

/** A size as a refusal names a limit: whole MiB or KiB when it is one, else bytes ("4 MiB", "1500 bytes"). */
export function sizeInWords(n: number): string {
  if (n % 1048576 === 0) return `${n / 1048576} MiB`;
  if (n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
