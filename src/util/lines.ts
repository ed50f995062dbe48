import type { Readable } from 'node:stream';

/**
 * Calls onLine for each line of a text stream, keeping at most maxBytes of an unfinished line: a process that
 * writes without newlines cannot make berth buffer without bound (the rest of such a line is dropped, marked).
 */
export function eachLine(stream: Readable, maxBytes: number, onLine: (line: string) => void): void {
  let parts: Buffer[] = [];
  let size = 0;
  let truncated = false;
  stream.on('data', (chunk: Buffer) => {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      keep(chunk.subarray(start, nl));
      onLine(Buffer.concat(parts).toString('utf8').replace(/\r$/, '') + (truncated ? ' [truncated]' : ''));
      parts = [];
      size = 0;
      truncated = false;
      start = nl + 1;
    }
    keep(chunk.subarray(start));
  });
  stream.on('end', () => {
    if (size > 0) onLine(Buffer.concat(parts).toString('utf8') + (truncated ? ' [truncated]' : ''));
  });
  function keep(b: Buffer): void {
    const room = maxBytes - size;
    if (b.length > room) truncated = true;
    const part = b.length > room ? b.subarray(0, Math.max(0, room)) : b;
    if (part.length) {
      parts.push(part);
      size += part.length;
    }
  }
}
