// One long-lived /bin/sh that runs berth's short host commands (mount, umount, ip, nft) for it.
// Why: Node's spawn() forks berth itself, and a fork copies berth's page tables while its event loop waits:
// 6 ms at 50 MB of RSS, 12 ms at 150 MB, 23 ms at 360 MB on this machine's virtualised CPU, on every spawn.
// A namespace sandbox's start and end made ten of them (two with spawnSync, which also waits for the command),
// so a burst of new sessions stalled every live session's calls. The shell is a megabyte; its forks cost berth
// nothing. Each command runs as a background job of the shell, so commands run side by side as spawn() did.
// Protocol (berth → shell stdin), one command:
//   ( trap 'echo "ID $?"' EXIT; timeout -k 5s 120s 'file' 'arg'… >/dev/null 2>'dir/ID' <input ) &
//   jobs >/dev/null
// Every argument is single-quoted (nothing berth did not write is expanded); input, when given, is a here-document
// with a random delimiter. The EXIT trap reports even when the job fails before its command runs (a failed fork, a
// failed redirection); `timeout` bounds a hung command; `jobs` reaps finished jobs (a non-interactive shell keeps
// each one, a zombie and a record, until asked). Shell stdout: one short "ID CODE" line per command (atomic: well
// under PIPE_BUF); berth then reads the command's stderr from dir/ID.
// Threat model: the shell runs as berth's user with berth's environment, exactly as spawn() would; only berth
// writes its stdin. Its stderr files live in a directory under berth's state root (state-root.ts: only berth's
// user may write there), never the shared temp directory, where another user could replace a removed directory
// with one of symlinks that root's `2>` would follow; berth reads them without following a symlink.
// A shell whose berth dies (even by SIGKILL) sees its stdin end and, once its jobs have ended, removes its
// directory itself (its own EXIT trap); one killed with berth leaves it to the next berth's sweep.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, mkdtempSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ownerTag } from './proc-stat.js';
import { usableRoot } from './state-root.js';

export interface RunResult {
  code: number | null;
  stderr: string;
}

/** How long a host command may run before `timeout` stops it (TERM, then KILL 5 s later). */
export const HOST_COMMAND_TIMEOUT_S = 120;
/** berth's own bound on a report, past the command's: a job killed outright never reports. */
const REPORT_GRACE_MS = 15_000;
/** At most this much of a command's stderr is read: enough for any error message, bounded for a noisy tool. */
const STDERR_LIMIT = 64 * 1024;
/** What `timeout` exits with when it stopped the command. */
const TIMED_OUT = 124;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

class HostShell {
  private readonly proc: ChildProcess;
  private readonly dir: string;
  private readonly pending = new Map<number, { resolve: (r: RunResult | Promise<RunResult>) => void; deadline: NodeJS.Timeout }>();
  /** Reported, stderr being read. */
  private readonly reading = new Map<number, Promise<void>>();
  private complaints = '';
  /** The shell has exited: new commands go to a new one (its jobs may still report here). */
  exited = false;
  /** Its stdout has closed: nothing pending can report any more. */
  private closed = false;

  constructor() {
    // Named by berth's pid and start time: a shell killed outright (with its process group) cannot remove it, and the
    // next berth's sweep removes those whose berth is dead (registry.ts).
    this.dir = mkdtempSync(join(usableRoot(), `host-${ownerTag()}-`));
    // -s: commands from stdin. The shell's own stderr (its complaints, never a command's) is kept for errors.
    this.proc = spawn('/bin/sh', ['-s'], { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
    this.proc.stdin!.on('error', () => undefined); // a dead shell: 'exit' and 'close' say so
    this.proc.stdin!.write(`trap ${quote(`wait; rm -rf ${quote(this.dir)}`)} EXIT\n`);
    this.proc.stderr!.on('data', (d: Buffer) => (this.complaints = (this.complaints + d.toString()).slice(-2000)));
    let buf = '';
    this.proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const m = /^(\d+) (\d+)$/.exec(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        const id = Number(m?.[1]);
        if (!m || !this.pending.has(id) || this.reading.has(id)) continue;
        this.reading.set(
          id,
          this.finish(id, Number(m[2])).finally(() => this.reading.delete(id)),
        );
      }
    });
    this.proc.once('error', () => (this.exited = true));
    this.proc.once('exit', () => (this.exited = true));
    // stdout closes only once the shell and every job it started have closed it: nothing pending can still report.
    this.proc.stdout!.once('close', () => {
      this.exited = this.closed = true;
      for (const id of [...this.pending.keys()])
        if (!this.reading.has(id)) this.settle(id, { code: null, stderr: this.why('ended before the command reported') });
      void Promise.all(this.reading.values()).then(() => rm(this.dir, { recursive: true, force: true }));
    });
    this.hold(false);
  }

  /** The shell keeps berth alive only while a command of berth's is in flight. */
  private hold(on: boolean): void {
    const handles = [this.proc, this.proc.stdin, this.proc.stdout, this.proc.stderr] as unknown as Array<{ ref?(): void; unref?(): void }>;
    for (const h of handles) (on ? h.ref : h.unref)?.call(h);
  }

  private why(what: string): string {
    return `the host shell ${what}${this.complaints.trim() ? ` (${this.complaints.trim()})` : ''}`;
  }

  /** `again` runs the command elsewhere: used when this shell died before it could read it (nothing ran). */
  run(id: number, file: string, args: string[], input: string | undefined, again: () => Promise<RunResult>): Promise<RunResult> {
    return new Promise((resolve) => {
      if (this.closed) return resolve({ code: null, stderr: this.why('has ended') });
      if (this.pending.size === 0) this.hold(true);
      // A job killed outright (or a shell killed with its jobs) never reports: berth stops waiting past the timeout.
      const deadline = setTimeout(
        () =>
          this.settle(id, {
            code: null,
            stderr: this.why(`got no report within ${HOST_COMMAND_TIMEOUT_S} s and ${REPORT_GRACE_MS / 1000} s`),
          }),
        HOST_COMMAND_TIMEOUT_S * 1000 + REPORT_GRACE_MS,
      );
      deadline.unref();
      this.pending.set(id, { resolve, deadline });
      const cmd = ['timeout', '-k', '5s', `${HOST_COMMAND_TIMEOUT_S}s`, file, ...args].map(quote).join(' ');
      const job = `trap ${quote(`echo "${id} $?"`)} EXIT; ${cmd} >/dev/null 2>${quote(join(this.dir, String(id)))}`;
      let text: string;
      if (input === undefined) text = `( ${job} </dev/null ) &\n`;
      else {
        const end = `BERTH_INPUT_${randomBytes(12).toString('hex')}`;
        text = `( ${job} <<'${end}'\n${input.endsWith('\n') ? input : `${input}\n`}${end}\n) &\n`;
      }
      // A write that fails (EPIPE: the shell died, its 'exit' not yet seen) reached no one: the command did not run.
      this.proc.stdin!.write(`${text}jobs >/dev/null\n`, (err) => {
        if (!err || !this.pending.has(id)) return;
        this.exited = true;
        this.settle(id, again());
      });
    });
  }

  private settle(id: number, r: RunResult | Promise<RunResult>): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.deadline);
    if (this.pending.size === 0) this.hold(false);
    p.resolve(r);
  }

  private async finish(id: number, code: number): Promise<void> {
    const file = join(this.dir, String(id));
    let stderr: string;
    try {
      // Never through a symlink; only the first STDERR_LIMIT bytes.
      const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const { buffer, bytesRead } = await fh.read(Buffer.alloc(STDERR_LIMIT), 0, STDERR_LIMIT, 0);
        stderr = buffer.subarray(0, bytesRead).toString();
      } finally {
        await fh.close();
      }
      await rm(file, { force: true });
    } catch (e) {
      // The redirection makes the file before the command runs: without it, the command never ran.
      this.settle(id, { code: null, stderr: this.why(`could not run the command (its stderr file: ${(e as Error).message})`) });
      return;
    }
    if (code === TIMED_OUT) stderr += `${stderr && !stderr.endsWith('\n') ? '\n' : ''}(stopped after ${HOST_COMMAND_TIMEOUT_S} s)`;
    this.settle(id, { code, stderr });
  }
}

/** A runner of host commands through one shell at a time; a shell that exits is replaced at the next command. */
export function hostShells(): (file: string, args: string[], input?: string) => Promise<RunResult> {
  let current: HostShell | undefined;
  let ids = 0;
  return (file, args, input) => {
    if ([file, ...args, input ?? ''].some((a) => a.includes('\0')))
      return Promise.resolve({ code: null, stderr: 'a host command may not hold a NUL byte (in an argument or its input)' });
    const attempt = (retries: number): Promise<RunResult> => {
      if (!current || current.exited) current = new HostShell();
      const again = () =>
        retries > 0
          ? attempt(retries - 1)
          : Promise.resolve({ code: null, stderr: 'the host shell died before it read the command, twice' });
      return current.run(++ids, file, args, input, again);
    };
    return attempt(1);
  };
}

/** berth's runner: runs a tool to its end through the host shell; `input`, when given, is its stdin. */
export const shellRun = hostShells();
