// Splits a server's stdout into lines. A line's pieces stay as they were read (never joined), so a large message can
// pass on as those bytes (src/wire/raw-json.ts); its text is decoded once the line ends, piece by piece into one
// string. Not while it grows: a line that never ends would then sit on V8's heap, at twice its size for text outside
// Latin-1, where a few sessions holding 60 MiB lines ran berth out of heap (a review); as buffers it is off the heap
// and bounded by maxMessageSize. A line that cannot be JSON (its first byte says so: a log line on stdout) is
// neither kept nor decoded, only counted: a server flooding stdout with text costs berth next to nothing.
import { StringDecoder } from 'node:string_decoder';

/** One line, without its newline. */
export interface Line {
  /** The line's bytes, as read (views of the chunks), from its first byte that is not blank; of a line that cannot
   * be JSON only the start. */
  parts: Buffer[];
  /** Its text, decoded; undefined for a line that cannot be JSON. */
  text: string | undefined;
  bytes: number;
  /** Its first 256 bytes as text, for a report. */
  head: string;
}

const HEAD = 256;

export class JsonLines {
  private parts: Buffer[] = [];
  private pending = 0;
  /** Bytes kept of a line that cannot be JSON (its start, for the report). */
  private kept = 0;
  /** Whether the line read so far can be JSON: unknown until its first byte that is not blank. */
  private json: boolean | undefined;

  constructor(private readonly onLine: (line: Line) => void) {}

  /** Bytes of the line not yet ended. */
  get partial(): number {
    return this.pending;
  }

  push(chunk: Buffer): void {
    let start = 0;
    let nl = chunk.indexOf(0x0a);
    while (nl !== -1) {
      this.take(chunk.subarray(start, nl));
      this.end();
      start = nl + 1;
      nl = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) this.take(chunk.subarray(start));
  }

  /** Drops what was read of the current line. */
  reset(): void {
    this.parts = [];
    this.kept = 0;
    this.pending = 0;
    this.json = undefined;
  }

  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    this.pending += piece.length;
    if (this.json === undefined) {
      let i = 0;
      while (i < piece.length && (piece[i] === 0x20 || piece[i] === 0x09 || piece[i] === 0x0d)) i++;
      if (i === piece.length) return; // blank so far: nothing to keep
      this.json = piece[i] === 0x7b || piece[i] === 0x5b;
      piece = piece.subarray(i);
    }
    if (this.json) this.parts.push(piece);
    else if (this.kept < HEAD) {
      // Only the start, for the report.
      const part = piece.subarray(0, HEAD - this.kept);
      this.parts.push(part);
      this.kept += part.length;
    }
  }

  private end(): void {
    const { parts, pending, json } = this;
    const text = json ? decode(parts) : undefined;
    this.reset();
    if (json === undefined) return; // a blank line
    const head = text !== undefined ? text.slice(0, HEAD) : Buffer.concat(parts).toString('utf8');
    this.onLine({ parts, text, bytes: pending, head });
  }
}

/** UTF-8 pieces as one string: each decoded (a character split between pieces is joined whole), then joined once. */
function decode(parts: Buffer[]): string {
  if (parts.length === 1) return parts[0]!.toString('utf8');
  const decoder = new StringDecoder('utf8');
  const texts = parts.map((p) => decoder.write(p));
  texts.push(decoder.end());
  return texts.join('');
}
