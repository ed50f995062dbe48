// File-backed note storage rooted in one directory (the session's private cwd).
// Every name is validated here, so no caller can reach outside that directory.
import { lstat, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const MAX_NOTE_BYTES = 256 * 1024;
export const MAX_NOTES = 500;
const EXT = '.md';
// Letters, digits, '.', '_' and '-'; must start alphanumeric, so no '/', '\', hidden files or '..' prefix.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A user-facing failure (bad name, missing note, quota); its message is safe to show. */
export class NoteError extends Error {}

export interface NoteInfo {
  name: string;
  bytes: number;
  modified: string;
}

export interface SearchHit {
  name: string;
  line: number;
  text: string;
}

export function checkName(name: string): string {
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new NoteError(
      `Invalid note name ${JSON.stringify(name)}: use 1-64 characters from A-Z a-z 0-9 . _ -, ` +
        `starting with a letter or digit (no paths, no "..").`,
    );
  }
  return name;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

export class NoteStore {
  constructor(readonly dir: string) {}

  private file(name: string): string {
    return join(this.dir, checkName(name) + EXT);
  }

  async write(name: string, content: string): Promise<{ bytes: number; created: boolean }> {
    const bytes = Buffer.byteLength(content, 'utf8');
    if (bytes > MAX_NOTE_BYTES) {
      throw new NoteError(`Note is ${bytes} bytes; the limit is ${MAX_NOTE_BYTES} bytes.`);
    }
    const path = this.file(name);
    const created = !(await this.exists(name));
    if (created && (await this.list()).length >= MAX_NOTES) {
      throw new NoteError(`This workspace already holds ${MAX_NOTES} notes; delete some first.`);
    }
    // Write-then-rename so readers never see a half-written note, and a planted
    // symlink at the target is replaced rather than followed.
    const tmp = join(this.dir, `.${name}.${process.pid}.${Date.now()}.tmp`);
    await writeFile(tmp, content, { encoding: 'utf8', flag: 'wx' });
    await rename(tmp, path);
    return { bytes, created };
  }

  async read(name: string): Promise<string> {
    await this.stat(name); // rejects non-regular files (e.g. symlinks)
    return readFile(this.file(name), 'utf8');
  }

  async stat(name: string): Promise<NoteInfo> {
    try {
      const st = await lstat(this.file(name));
      if (!st.isFile()) throw new NoteError(`"${name}" is not a regular note file.`);
      return { name, bytes: st.size, modified: st.mtime.toISOString() };
    } catch (err) {
      if (isMissing(err)) throw new NoteError(`No note named "${name}".`);
      throw err;
    }
  }

  async exists(name: string): Promise<boolean> {
    try {
      await this.stat(name);
      return true;
    } catch (err) {
      if (err instanceof NoteError) return false;
      throw err;
    }
  }

  async delete(name: string): Promise<void> {
    await this.stat(name);
    await unlink(this.file(name));
  }

  async list(): Promise<NoteInfo[]> {
    const entries = await readdir(this.dir, { withFileTypes: true });
    const names = entries
      .filter((e) => e.isFile() && e.name.endsWith(EXT))
      .map((e) => e.name.slice(0, -EXT.length))
      .filter((n) => NAME_RE.test(n) && !n.includes('..'));
    const infos: NoteInfo[] = [];
    for (const n of names) {
      try {
        infos.push(await this.stat(n));
      } catch {
        // Deleted between readdir and stat: just skip it.
      }
    }
    return infos.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Case-insensitive substring search over names and lines. */
  async search(query: string, limit = 50): Promise<{ hits: SearchHit[]; truncated: boolean }> {
    const q = query.toLowerCase();
    const hits: SearchHit[] = [];
    for (const { name } of await this.list()) {
      if (name.toLowerCase().includes(q)) hits.push({ name, line: 0, text: `(name) ${name}` });
      let content: string;
      try {
        content = await this.read(name);
      } catch {
        continue;
      }
      content.split('\n').forEach((text, i) => {
        if (text.toLowerCase().includes(q)) hits.push({ name, line: i + 1, text: text.slice(0, 200) });
      });
      if (hits.length > limit) break;
    }
    return { hits: hits.slice(0, limit), truncated: hits.length > limit };
  }
}
