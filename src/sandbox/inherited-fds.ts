// Descriptors berth inherited open across exec, closed before its first sandbox starts.
// Why: Node opens every descriptor of its own close-on-exec, but a descriptor berth's parent left open without the
// flag (a supervisor's pipe, a shell's redirection, a test harness's fd 251) stays open in berth, and spawn() passes
// it on to every child. bwrap keeps what it inherits, so a sandboxed server would hold it: write to its parent's
// pipe, read a file opened outside its sandbox, use a socket of the host's network.
// Threat model: the server must start with stdin, stdout, stderr and the descriptors berth hands it on purpose
// (bwrap's block and args pipes), nothing else. This closes, in berth itself, every inherited descriptor from 3 up
// that lacks close-on-exec, except Node's own IPC channel (when berth was forked; Node opens it close-on-exec). The CLI does so
// first thing, before the host shell, the startup sweep or a driver's probe spawns anything; starting a sandbox or
// a dial helper does so too, for berth used as a library. Everything berth opens itself is close-on-exec, so once
// is enough. Without /proc (no fdinfo to read the flags from) nothing is closed.
import { closeSync, constants, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;
let done = false;

/**
 * The file, when `fd` is one V8 opens itself without close-on-exec when asked to by a flag: `--perf-basic-prof`'s
 * map, `--prof`'s log. Closing one would hand its number to berth's next pipe, and V8 would go on writing its lines
 * into it; leaving it would hand every sandbox a writable descriptor of a host file.
 */
function v8Own(fd: number): string | undefined {
  let target: string;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
  const pid = process.pid;
  const own =
    target.endsWith(`/perf-${pid}.map`) || target.endsWith(`/jit-${pid}.dump`) || new RegExp(`isolate-0x[0-9a-f]+-${pid}-`).test(target);
  // A file V8 writes to after it was removed is named "… (deleted)": there is nothing to open again.
  return own && !target.endsWith(' (deleted)') ? target : undefined;
}

/**
 * Opens `path` again at the number `fd` (appending, as V8 writes it), this time close-on-exec (libuv opens every
 * file so). The file is opened once first, so `fd` is closed only when it can be reopened; once closed, the number
 * is the lowest free one but for any lower free ones, which are filled meanwhile. Runs before berth opens anything
 * else (no other thread opens files yet); false when the number went elsewhere (V8's lines then go astray).
 */
function reopenCloseOnExec(fd: number, path: string): boolean {
  const fillers: number[] = [];
  try {
    fillers.push(openSync(path, constants.O_WRONLY | constants.O_APPEND)); // no O_CREAT: the file must be there
  } catch {
    return false; // left as it is: open to children, but V8's own
  }
  try {
    closeSync(fd);
    for (;;) {
      const n = openSync(path, constants.O_WRONLY | constants.O_APPEND);
      if (n === fd) return true;
      fillers.push(n);
      if (n > fd) return false;
    }
  } catch {
    return false;
  } finally {
    for (const n of fillers) closeSync(n);
  }
}

/** Closes inherited descriptors that would reach children (once per process); returns those it closed. */
export function closeInheritedFds(): number[] {
  if (done) return [];
  done = true;
  // Node removes NODE_CHANNEL_FD from the environment once it has opened the channel (close-on-exec, so a sandbox
  // never holds it): the channel's own descriptor says which it is.
  const channel = (process as { channel?: { fd?: number } }).channel?.fd;
  const keep = new Set([0, 1, 2, channel ?? -1]);
  const closed: number[] = [];
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fdinfo');
  } catch {
    return closed; // no /proc: nothing to learn the flags from
  }
  for (const name of fds) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || keep.has(fd)) continue;
    try {
      const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
      const v8 = v8Own(fd);
      if (v8 !== undefined) {
        reopenCloseOnExec(fd, v8);
        continue;
      }
      closeSync(fd);
      closed.push(fd);
    } catch {
      // gone meanwhile (the directory's own descriptor, listed while it was open)
    }
  }
  return closed;
}
