// Where a new session goes: the better of two sampled candidates (power of two choices), the receiving node being
// one of the two whenever it can take the session (saves a hop without every edge herding onto itself).
import type { NodeInfo, RuntimeLoad } from './directory.js';

export interface Candidate {
  id: string;
  load: RuntimeLoad;
}

/** Lower is better: a node with a warm server first, then the emptier one. */
export function score(l: RuntimeLoad): [number, number] {
  return [l.warm > 0 ? 0 : 1, l.max > 0 ? l.sessions / l.max : 1];
}

function better(a: Candidate, b: Candidate): Candidate {
  const [x, y] = [score(a.load), score(b.load)];
  return x[0] < y[0] || (x[0] === y[0] && x[1] <= y[1]) ? a : b;
}

/**
 * Nodes that can take a session of this runtime: live (in the view), not draining, fresh, below their cap, with at
 * least `minFree` bytes of memory (when they report it).
 */
export function candidates(view: Iterable<NodeInfo>, runtime: string, now: number, staleMs: number, minFree = 0): Candidate[] {
  const out: Candidate[] = [];
  for (const n of view) {
    const load = n.load[runtime];
    if (!load || n.draining || now - n.updatedAt > staleMs || load.sessions >= load.max) continue;
    if (n.freeMem !== undefined && n.freeMem < minFree) continue;
    out.push({ id: n.id, load });
  }
  return out;
}

/** The chosen node's id, or undefined when none can take a session. */
export function choose(cands: Candidate[], selfId: string, random: () => number = Math.random): string | undefined {
  if (cands.length === 0) return undefined;
  if (cands.length === 1) return cands[0]!.id;
  const self = cands.find((c) => c.id === selfId);
  const others = cands.filter((c) => c !== self);
  const pick = () => others.splice(Math.floor(random() * others.length), 1)[0]!;
  const a = self ?? pick();
  const b = pick();
  return better(a, b).id;
}
