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
import { closeSync, readdirSync, readFileSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;
let done = false;

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
      closeSync(fd);
      closed.push(fd);
    } catch {
      // gone meanwhile (the directory's own descriptor, listed while it was open)
    }
  }
  return closed;
}
