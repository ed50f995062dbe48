// One long-lived /bin/sh that runs berth's short host commands (mount, umount, ip, nft) for it.
// Why: Node's spawn() forks berth itself, and a fork copies berth's page tables while its event loop waits:
// 6 ms at 50 MB of RSS, 12 ms at 150 MB, 23 ms at 360 MB on this machine's virtualised CPU, on every spawn.
// A namespace sandbox's start and end made ten of them (two with spawnSync, which also waits for the command),
// so a burst of new sessions stalled every live session's calls. The shell is a megabyte; its forks cost berth
// nothing. Each command runs as a background job of the shell, so commands run side by side as spawn() did.
// Protocol (berth → shell stdin): `( 'file' 'arg'… <input 2>'dir/ID' ; echo "ID $?" ) &`, every argument
// single-quoted (no expansion of anything berth did not write); input, when given, as a here-document with a
// random delimiter. Shell stdout: one short "ID CODE" line per command (atomic: well under PIPE_BUF), after which
// berth reads the command's stderr from dir/ID. Threat model: the shell runs as berth's user with berth's
// environment, exactly as spawn() would; only berth writes its stdin; its stderr files live in a 0700 directory.
// A non-interactive shell keeps a record of every background job until a `wait`, so after ROTATE_AFTER commands
// the shell is retired (stdin closed: its jobs finish and report) and a fresh one takes the next commands.
// Each shell has its own stderr directory. berth removes it once a retired shell's jobs have all reported; if berth
// dies first (even by SIGKILL), the shell sees its stdin end and removes it itself after its jobs (an EXIT trap).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  code: number | null;
  stderr: string;
}

/** Commands one shell runs before it is retired (each leaves a job record in the shell until it ends). */
const ROTATE_AFTER = 1000;
/** At most this much of a command's stderr is kept: enough for any error message, bounded for a noisy tool. */
const STDERR_LIMIT = 64 * 1024;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

interface Pending {
  resolve: (r: RunResult) => void;
}

/** Every live shell's stderr directory, removed when berth exits. */
const dirs = new Set<string>();
let exitHook = false;

class HostShell {
  private readonly proc: ChildProcess;
  private readonly dir: string;
  private readonly pending = new Map<number, Pending>();
  private readonly reads = new Set<Promise<void>>();
  private complaints = '';
  sent = 0;
  private gone = false;

  constructor(private readonly onGone: (shell: HostShell) => void) {
    this.dir = mkdtempSync(join(tmpdir(), 'berth-host-'));
    dirs.add(this.dir);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
    }
    // -s: commands from stdin. The shell's own stderr (its complaints, never a command's) is kept for errors.
    this.proc = spawn('/bin/sh', ['-s'], { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
    this.proc.stdin!.on('error', () => undefined); // a dead shell: 'exit' fails what is pending
    this.proc.stdin!.write(`trap ${quote(`wait; rm -rf ${quote(this.dir)}`)} EXIT\n`);
    this.proc.stderr!.on('data', (d: Buffer) => (this.complaints = (this.complaints + d.toString()).slice(-2000)));
    let buf = '';
    this.proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^(\d+) (\d+)$/.exec(line);
        if (!m) continue;
        const read = this.finish(Number(m[1]), Number(m[2]));
        this.reads.add(read);
        void read.finally(() => this.reads.delete(read));
      }
    });
    this.proc.on('error', (e) => this.fail(e.message));
    // stdout ends only when the shell and every job it started have closed it: nothing pending can still report.
    this.proc.stdout!.on('close', () => {
      this.fail(`the host shell ended (${this.complaints.trim() || 'no message'})`);
      void Promise.all(this.reads).then(() => rm(this.dir, { recursive: true, force: true }).finally(() => dirs.delete(this.dir)));
    });
    this.hold(false);
  }

  /** The shell keeps berth alive only while a command of berth's is in flight. */
  private hold(on: boolean): void {
    const handles = [this.proc, this.proc.stdin, this.proc.stdout, this.proc.stderr] as unknown as Array<{ ref?(): void; unref?(): void }>;
    for (const h of handles) (on ? h.ref : h.unref)?.call(h);
  }

  run(id: number, file: string, args: string[], input?: string): Promise<RunResult> {
    return new Promise((resolve) => {
      if (this.gone || [file, ...args].some((a) => a.includes('\0'))) {
        resolve({ code: null, stderr: this.gone ? 'the host shell ended' : 'an argument holds a NUL byte' });
        return;
      }
      if (this.pending.size === 0) this.hold(true);
      this.pending.set(id, { resolve });
      this.sent++;
      const cmd = [file, ...args].map(quote).join(' ');
      const err = quote(join(this.dir, String(id)));
      let text: string;
      if (input === undefined) text = `( ${cmd} </dev/null >/dev/null 2>${err}; echo "${id} $?" ) &\n`;
      else {
        const end = `BERTH_INPUT_${randomBytes(12).toString('hex')}`;
        const body = input.endsWith('\n') ? input : `${input}\n`;
        text = `( ${cmd} >/dev/null 2>${err} <<'${end}'\n${body}${end}\necho "${id} $?" ) &\n`;
      }
      this.proc.stdin!.write(text);
    });
  }

  /** No more commands: the shell ends at once, its jobs when they have; their reports still arrive. berth, not the
   * shell's EXIT trap, then removes the directory: only berth knows when it has read the last stderr file. */
  retire(): void {
    this.proc.stdin!.end('trap - EXIT\n');
  }

  private async finish(id: number, code: number): Promise<void> {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.hold(false);
    const file = join(this.dir, String(id));
    const stderr = await readFile(file)
      .then((b) => b.subarray(0, STDERR_LIMIT).toString())
      .catch(() => '');
    await unlink(file).catch(() => undefined);
    p.resolve({ code, stderr });
  }

  private fail(why: string): void {
    if (this.gone) return;
    this.gone = true;
    for (const [, p] of this.pending) p.resolve({ code: null, stderr: why });
    this.pending.clear();
    this.onGone(this);
  }
}

/** A runner of host commands: one shell at a time, retired after `rotateAfter` commands (the test makes it small). */
export function hostShells(rotateAfter = ROTATE_AFTER): (file: string, args: string[], input?: string) => Promise<RunResult> {
  let current: HostShell | undefined;
  let ids = 0;
  return (file, args, input) => {
    if (!current || current.sent >= rotateAfter) {
      current?.retire();
      current = new HostShell((s) => {
        if (current === s) current = undefined;
      });
    }
    return current.run(++ids, file, args, input);
  };
}

/** berth's runner: runs a tool to its end through the host shell; `input`, when given, is its stdin. */
export const shellRun = hostShells();
