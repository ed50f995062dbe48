// Splits a server's stdout into lines, decoding a long line's text as its chunks arrive. A line of 30 MiB used to be
// joined, decoded and parsed in one go when its newline came, a single stall of every other session; now only the
// parse is left for the end, and the pieces stay as they were read, so the message can pass on as those bytes
// (src/wire/raw-json.ts). A line that cannot be JSON (its first byte says so: a log line on stdout) is neither kept
// nor decoded, only counted: a server flooding stdout with text costs berth next to nothing, however long its lines.
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
  private text = '';
  private pending = 0;
  /** Bytes kept of a line that cannot be JSON (its start, for the report). */
  private kept = 0;
  /** Whether the line read so far can be JSON: unknown until its first byte that is not blank. */
  private json: boolean | undefined;
  private readonly decoder = new StringDecoder('utf8');

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
    this.text = '';
    this.pending = 0;
    this.json = undefined;
    this.decoder.end();
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
    if (this.json) {
      this.parts.push(piece);
      this.text += this.decoder.write(piece);
    } else if (this.kept < HEAD) {
      // Only the start, for the report.
      const part = piece.subarray(0, HEAD - this.kept);
      this.parts.push(part);
      this.kept += part.length;
    }
  }

  private end(): void {
    const { parts, pending, json } = this;
    const text = json ? this.text + this.decoder.end() : undefined;
    this.reset();
    if (json === undefined) return; // a blank line
    const head = text !== undefined ? text.slice(0, HEAD) : Buffer.concat(parts).toString('utf8');
    this.onLine({ parts, text, bytes: pending, head });
  }
}
