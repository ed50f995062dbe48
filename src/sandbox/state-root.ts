// Where berth keeps its state on the host (sandbox records for the sweep, the host shell's scratch files): a
// directory only berth's user may write, so no other user can plant or replace anything in it.
import { mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let root: string | undefined;

/** Sets the state root (server.stateDir) before any sandbox starts; one per process. */
export function useStateRoot(dir: string): void {
  root = dir;
}

/** server.stateDir, else BERTH_STATE_DIR, else /run/berth as root, else $XDG_RUNTIME_DIR/berth, else a per-user dir in the OS temp dir. */
export function stateRoot(): string {
  root ??=
    process.env.BERTH_STATE_DIR ??
    (process.getuid?.() === 0
      ? '/run/berth'
      : process.env.XDG_RUNTIME_DIR
        ? join(process.env.XDG_RUNTIME_DIR, 'berth')
        : join(tmpdir(), `berth-state-${process.getuid?.() ?? 'user'}`));
  return root;
}

/** The state root, made if missing; refused unless only we can write it (records say what to kill and delete). */
export function usableRoot(): string {
  const dir = stateRoot();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (process.getuid && st.uid !== process.getuid()) throw new Error(`${dir} is owned by uid ${st.uid}, not berth's`);
  if (st.mode & 0o022) throw new Error(`${dir} is writable by others`);
  return dir;
}
