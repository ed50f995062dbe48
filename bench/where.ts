// Where berth's time goes on the relayed tool-call path: one berth hosting the probe server, S official SDK
// clients calling `echo` back to back, and berth's own cost per call read from /proc over the measured window —
// CPU (user and system), context switches (voluntary: it waited; involuntary: it was preempted) — and, on request,
// a CPU profile of berth (node --cpu-prof, summarised by bench/cpuprofile-top.ts) or its syscalls (strace -c -f).
//
//   node --import tsx bench/where.ts [--isolation process|namespace] [--upstream stdio|http] [--sessions 8]
//        [--seconds 5] [--warmup 1] [--prof DIR] [--strace FILE] [--perf FILE] [--berth-bin bin/berth.js]
//        [--floor relay|http] [--network none|egress|host] [--every SECONDS] [--big BYTES] [--node-args '…']
//
// --floor measures bench/floor-relay.mjs in berth's place, under the same load: the least Node.js does to relay a
// call to a stdio server (relay), or to answer it over node:http at all (http): what berth's figure is bounded by.
//
// --prof samples wall time on berth's main thread: a write(2) that wakes another process and is preempted by it
// counts as time in that write. --perf (perf record -e cpu-clock, with node --perf-basic-prof for the JS names)
// samples only on-CPU time, kernel included, over all of berth's threads.
//
// Short by design (the machine is shared): one target, a few seconds. The comparison across targets and peers is
// `npm run bench`; this is the magnifying glass for one of them.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cpuMs, systemCpu } from './procfs.js';
import { compileProbe, settle, startBerth, startFloor } from './targets.js';
import { connect, disconnect, dist, type Conn } from './workloads.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const ISOLATION = opt('isolation', 'process');
const UPSTREAM = opt('upstream', 'stdio') as 'stdio' | 'http';
const SESSIONS = Number(opt('sessions', '8'));
const SECONDS = Number(opt('seconds', '5'));
const WARMUP = Number(opt('warmup', '1'));
const PROF = opt('prof', '');
const STRACE = opt('strace', '');
const PERF = opt('perf', '');
/** Every syscall of the window, one a line (strace -f -tt): to read what one call does, with --sessions 1. */
const STRACE_ALL = opt('strace-all', '');
const BIN = opt('berth-bin', 'bin/berth.js');
const FLOOR = opt('floor', '') as '' | 'relay' | 'http';
/** berth's --network for its sessions ('' = berth's default). */
const NETWORK = opt('network', '');
/** Also print calls/s and berth's CPU per call every this many seconds of the window (0: only the total). */
const EVERY = Number(opt('every', '0'));
/** Call the probe's `big` tool for an answer of this many bytes instead of `echo` (0: echo). */
const BIG = Number(opt('big', '0'));

/** utime and stime (ms) of a process, all threads. */
function times(pid: number): { user: number; sys: number } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 };
}

/** Context switches of a process, summed over its threads. */
function switches(pid: number): { voluntary: number; involuntary: number } {
  let voluntary = 0;
  let involuntary = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let st: string;
    try {
      st = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    } catch {
      continue; // a thread that ended
    }
    voluntary += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
    involuntary += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
  }
  return { voluntary, involuntary };
}

const probe = compileProbe();
/** More node options for the target (space-separated), e.g. '--trace-deopt' to see what V8 keeps recompiling. */
const NODE_ARGS = opt('node-args', '').split(' ').filter(Boolean);
const nodeArgs = [...(PROF ? ['--cpu-prof', '--cpu-prof-dir', resolve(PROF)] : []), ...(PERF ? ['--perf-basic-prof'] : []), ...NODE_ARGS];
const WARM = FLOOR ? 0 : 2;
const t = FLOOR
  ? await startFloor(probe, FLOOR, nodeArgs)
  : await startBerth(probe, {
      bin: BIN,
      warmPool: WARM,
      isolation: ISOLATION,
      upstream: UPSTREAM,
      nodeArgs,
      flags: NETWORK ? ['--network', NETWORK] : [],
    });
let conns: Conn[] = [];
try {
  await settle([{ t, servers: WARM }], 60_000);
  conns = await Promise.all(Array.from({ length: SESSIONS }, () => connect(t.url)));
  // The pool refills after the sessions took its servers: starting ones must not run inside the window.
  await settle([{ t, servers: SESSIONS + WARM }], 60_000);
  const pid = t.gatewayPid!;
  const echo = BIG > 0 ? { name: 'big', arguments: { bytes: BIG } } : { name: 'echo', arguments: { text: 'hello from the bench' } };
  let stop = false;
  let measuring = false;
  let calls = 0;
  let errors = 0;
  const lat: number[] = [];
  const loops = conns.map(async (c) => {
    while (!stop) {
      const t0 = performance.now();
      try {
        await c.client.callTool(echo);
        if (measuring) {
          calls++;
          lat.push(performance.now() - t0);
        }
      } catch {
        errors++;
      }
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  const straceArgs = STRACE ? ['-c', '-o', resolve(STRACE)] : STRACE_ALL ? ['-tt', '-s', '80', '-o', resolve(STRACE_ALL)] : undefined;
  const strace = straceArgs && spawn('strace', ['-f', '-p', String(pid), ...straceArgs], { stdio: 'ignore' });
  if (strace) await new Promise((r) => setTimeout(r, 300)); // attached to every thread
  const perf = PERF
    ? spawn(
        'perf',
        ['record', ...(process.env.PERF_G ? ['-g'] : []), '-e', 'cpu-clock', '-F', '1999', '-p', String(pid), '-o', resolve(PERF)],
        { stdio: 'ignore' },
      )
    : undefined;
  if (perf) await new Promise((r) => setTimeout(r, 300));
  const servers = () => t.serverPids().reduce((a, p) => a + cpuMs(p), 0);
  // The servers' CPU by program (node, socat, slirp4netns, bwrap…): what each process on the path costs.
  const byProgram = () => {
    const m = new Map<string, number>();
    for (const p of t.serverPids()) {
      let comm: string;
      try {
        comm = readFileSync(`/proc/${p}/comm`, 'utf8').trim();
      } catch {
        continue; // gone
      }
      m.set(comm, (m.get(comm) ?? 0) + cpuMs(p));
    }
    return m;
  };
  const programsBefore = byProgram();
  const a = {
    times: times(pid),
    sw: switches(pid),
    servers: servers(),
    sys: systemCpu(),
    at: performance.now(),
    client: process.cpuUsage(),
  };
  // The profile's clock is the monotonic one process.hrtime reads: the window lets cpuprofile-top.ts skip start-up.
  const from = process.hrtime.bigint() / 1000n;
  measuring = true;
  // --every: the window in slices, to see whether a target speeds up as it runs (JIT, caches) or slows (growth).
  const slices = EVERY > 0 ? Math.max(1, Math.round(SECONDS / EVERY)) : 1;
  for (let i = 0, mark = { calls: 0, cpu: a.times.user + a.times.sys, at: performance.now() }; i < slices; i++) {
    await new Promise((r) => setTimeout(r, (SECONDS * 1000) / slices));
    if (slices === 1) break;
    const now = { calls, cpu: times(pid).user + times(pid).sys, at: performance.now() };
    const n = Math.max(1, now.calls - mark.calls);
    process.stdout.write(
      `  slice ${i + 1}: ${Math.round((n / (now.at - mark.at)) * 1000)} calls/s, berth CPU ${Math.round(((now.cpu - mark.cpu) / n) * 1000) / 1000} ms/call\n`,
    );
    mark = now;
  }
  measuring = false;
  const to = process.hrtime.bigint() / 1000n;
  for (const tracer of [strace, perf]) tracer?.kill('SIGINT');
  const b = {
    times: times(pid),
    sw: switches(pid),
    servers: servers(),
    sys: systemCpu(),
    at: performance.now(),
    client: process.cpuUsage(a.client),
  };
  const programsAfter = byProgram();
  stop = true;
  await Promise.all(loops);
  for (const tracer of [strace, perf]) if (tracer && tracer.exitCode === null) await new Promise((r) => tracer.once('exit', r));
  if (PROF) mkdirSync(PROF, { recursive: true });
  if (PROF) writeFileSync(join(PROF, 'window.json'), JSON.stringify({ from: Number(from), to: Number(to), calls }));
  const per = (x: number) => Math.round((x / Math.max(1, calls)) * 1000) / 1000;
  const user = b.times.user - a.times.user;
  const sys = b.times.sys - a.times.sys;
  const wall = (b.at - a.at) / 1000;
  const busy = (b.sys.busy - a.sys.busy) / (b.sys.total - a.sys.total || 1);
  const l = dist(lat);
  process.stdout.write(
    [
      `${FLOOR ? `floor-relay.mjs (${FLOOR})` : `berth ${ISOLATION}/${UPSTREAM}`}, ${SESSIONS} sessions, ${SECONDS} s${PROF ? ' (profiled)' : ''}${STRACE || STRACE_ALL ? ' (straced)' : ''}`,
      `  calls ${calls} (${Math.round(calls / wall)}/s), errors ${errors}, latency p50 ${l.p50} ms p99 ${l.p99} ms`,
      `  berth CPU ms/call ${per(user + sys)} (user ${per(user)}, sys ${per(sys)})`,
      `  berth context switches/call: voluntary ${per(b.sw.voluntary - a.sw.voluntary)}, involuntary ${per(b.sw.involuntary - a.sw.involuntary)}`,
      `  clients (this process) CPU ms/call ${per((b.client.user + b.client.system) / 1000)}`,
      `  servers CPU ms/call ${per(b.servers - a.servers)}; machine busy ${Math.round(busy * 100)}% of ${Math.round(wall * 10) / 10} s`,
      `  by program, ms/call: ${[...programsAfter]
        .map(([k, v]) => [k, per(v - (programsBefore.get(k) ?? 0))] as const)
        .sort((x, y) => y[1] - x[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
      '',
    ].join('\n'),
  );
} finally {
  await Promise.all(conns.map(disconnect));
  await t.stop();
}
