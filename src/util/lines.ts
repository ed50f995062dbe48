import type { Readable } from 'node:stream';

/** Decides which lines pass (a byte budget); what it refuses, and what eachLine cuts, is reported as dropped. */
export interface LineGate {
  /** Whether a line of `bytes` bytes passes (it spends budget when it does). */
  admit(bytes: number): boolean;
  /** True while the budget is spent: whole chunks are dropped unsplit, so a flood costs one check per chunk. */
  readonly shut: boolean;
  dropped(bytes: number): void;
  /** Told of every chunk dropped unread while shut: how long (ms) to stop reading, so a flood waits in its pipe. */
  drained?(bytes: number): number;
}

/**
 * Calls onLine for each line of a text stream, keeping at most maxBytes of an unfinished line: a process that
 * writes without newlines cannot make berth buffer without bound (the rest of such a line is dropped, marked).
 * With a gate, lines over its budget are dropped, and while it is shut every chunk is dropped without looking for
 * line ends (and, past the gate's drain rate, not read at all for a while: the writer blocks on its full pipe);
 * lines resume at the next line start once it opens again.
 */
export function eachLine(stream: Readable, maxBytes: number, onLine: (line: string) => void, gate?: LineGate): void {
  let parts: Buffer[] = [];
  let size = 0;
  let cut = 0;
  /** Mid-line after dropping: the rest of that line is dropped too. */
  let skipping = false;
  stream.on('data', (chunk: Buffer) => {
    if (gate?.shut) {
      gate.dropped(chunk.length + size + cut);
      reset();
      skipping = chunk[chunk.length - 1] !== 0x0a;
      const pause = gate.drained?.(chunk.length) ?? 0;
      if (pause > 0 && !stream.isPaused()) {
        stream.pause();
        setTimeout(() => stream.resume(), pause).unref();
      }
      return;
    }
    let start = 0;
    if (skipping) {
      const nl = chunk.indexOf(0x0a);
      gate?.dropped(nl === -1 ? chunk.length : nl + 1);
      if (nl === -1) return;
      skipping = false;
      start = nl + 1;
    }
    for (let nl = chunk.indexOf(0x0a, start); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      keep(chunk.subarray(start, nl));
      emit(false);
      start = nl + 1;
      if (gate?.shut && start < chunk.length) {
        gate.dropped(chunk.length - start);
        skipping = chunk[chunk.length - 1] !== 0x0a;
        return;
      }
    }
    keep(chunk.subarray(start));
  });
  stream.on('end', () => {
    if (size > 0 || cut > 0) emit(true);
  });
  function emit(last: boolean): void {
    if (gate && !gate.admit(size)) gate.dropped(size + cut);
    else {
      if (cut > 0) gate?.dropped(cut);
      const text = Buffer.concat(parts).toString('utf8');
      onLine((last ? text : text.replace(/\r$/, '')) + (cut > 0 ? ' [truncated]' : ''));
    }
    reset();
  }
  function reset(): void {
    parts = [];
    size = 0;
    cut = 0;
  }
  function keep(b: Buffer): void {
    const room = maxBytes - size;
    const part = b.length > room ? b.subarray(0, Math.max(0, room)) : b;
    cut += b.length - part.length;
    if (part.length) {
      parts.push(part);
      size += part.length;
    }
  }
}
