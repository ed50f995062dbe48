/**
 * Columns for MCP servers berth did not write (issue 16): each server is run by the suite directly, over its own
 * Streamable HTTP, and through berth (over stdio, and as an http upstream), and a scenario that passes directly
 * must pass through berth. Both suites run once per column (`--suite all`, `--requirements 2026-07-28`): one
 * invocation takes seconds, where one per scenario would take minutes.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import {
  cellText,
  checksByScenario,
  judge,
  notRun,
  NPX_2026,
  NPX_PREFIX,
  SUITE_2026,
  SUITE_PACKAGE,
  type CellResult,
  type CheckSummary,
} from './checks.js';
import { freePort, ROOT, runToEnd, startChild, stopChild, waitForOutput, type RunningTarget } from './processes.js';

export type Suite = '2025' | '2026';
type Column = 'direct' | 'stdio' | 'http';
const COLUMNS: Column[] = ['direct', 'stdio', 'http'];
const COLUMN_TITLE: Record<Column, string> = { direct: 'direct', stdio: 'berth stdio', http: 'berth http upstream' };

interface HostedServer {
  id: string;
  title: string;
  /** The server speaking MCP on stdin/stdout, if it can. */
  stdio?: string[];
  /** The server serving Streamable HTTP at /mcp (the direct column, and berth's http upstream). */
  http: string[];
  /** The environment variable it takes its port from; berth sets PORT, so another name is passed on by a shell. */
  portEnv: string;
  /** Directories berth must let it read beyond those its command names (the shell's script, when one is used). */
  mounts?: string[];
  /** How its HTTP mode says it is ready. */
  ready: RegExp;
}

/**
 * A file of an installed package, by absolute path: berth starts servers in other directories. (Resolving
 * `pkg/package.json` would not do: the SDK's exports map sends it to dist/cjs/package.json.)
 */
function packageBin(pkg: string, file: string): string {
  return join(ROOT, 'node_modules', pkg, file);
}

function packageVersion(pkg: string): string {
  return (JSON.parse(readFileSync(packageBin(pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

const EVERYTHING_BIN = packageBin('@modelcontextprotocol/server-everything', 'dist/index.js');
/**
 * The conformance repository's own everything-server is in no npm package (the suite ships only dist/), so CI
 * could not install it; the SDK's example server (a runtime dependency) stands in as a second server berth did
 * not write. It speaks only Streamable HTTP, on $MCP_PORT, bound to 127.0.0.1 with the SDK's Host check.
 */
const SDK_EXAMPLE = packageBin('@modelcontextprotocol/sdk', 'dist/esm/examples/server/simpleStreamableHttp.js');

export const SERVERS: HostedServer[] = [
  {
    id: 'everything',
    title: `@modelcontextprotocol/server-everything ${packageVersion('@modelcontextprotocol/server-everything')}`,
    stdio: [process.execPath, EVERYTHING_BIN, 'stdio'],
    http: [process.execPath, EVERYTHING_BIN, 'streamableHttp'],
    portEnv: 'PORT',
    ready: /listening on port \d+/,
  },
  {
    id: 'sdk-example',
    title: `@modelcontextprotocol/sdk ${packageVersion('@modelcontextprotocol/sdk')} examples/server/simpleStreamableHttp`,
    http: [process.execPath, SDK_EXAMPLE],
    portEnv: 'MCP_PORT',
    mounts: [dirname(SDK_EXAMPLE)],
    ready: /listening on port \d+/,
  },
];

/**
 * Scenarios a column cannot run for a reason outside berth, per server, column and suite ("id/column/suite" →
 * scenario → why). A scenario listed here is shown as n/a and never counts against berth. None so far.
 */
const NOT_APPLICABLE: Record<string, Record<string, string>> = {};

/** Why berth passes a scenario the server fails on its own, where the reason is known. */
const BERTH_ADDS: Record<string, string> = {
  'dns-rebinding-protection': "berth refuses a non-loopback Host or Origin itself; the server's own HTTP mode accepts any",
};

async function startDirect(server: HostedServer, log: string): Promise<RunningTarget> {
  const port = await freePort();
  const child = startChild(server.http[0]!, server.http.slice(1), { env: { [server.portEnv]: String(port) }, log });
  await waitForOutput(child, ['stdout', 'stderr'], server.ready, 60_000).catch(async (e) => {
    await stopChild(child);
    throw e;
  });
  return { url: `http://127.0.0.1:${port}/mcp`, command: [`${server.portEnv}=${port}`, ...server.http], stop: () => stopChild(child) };
}

async function startBerth(server: HostedServer, column: 'stdio' | 'http', suite: Suite, log: string): Promise<RunningTarget> {
  const port = await freePort();
  // With the 2025 suite stdio runs with --json-window 0, as the fixture's stateful column does (every call a resumable
  // SSE stream); with the 2026 suite at the default, as the fixture's 2026 columns do (an SSE stream's HTTP status is
  // sent before the answer, so a 2026 error could not get its own status).
  const mode = column === 'http' ? ['--upstream', 'http'] : suite === '2025' ? ['--json-window', '0'] : [];
  const mounts = (server.mounts ?? []).flatMap((m) => ['--mount', m]);
  const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const serverCommand =
    column === 'stdio'
      ? server.stdio!
      : server.portEnv === 'PORT'
        ? server.http
        : ['/bin/sh', '-c', `${server.portEnv}="$PORT" exec ${server.http.map(shellQuote).join(' ')}`];
  const command = [
    process.execPath,
    join(ROOT, 'bin', 'berth.js'),
    'run',
    '--port',
    String(port),
    ...mode,
    ...mounts,
    '--',
    ...serverCommand,
  ];
  const child = startChild(command[0]!, command.slice(1), { log });
  const m = await waitForOutput(child, ['stdout'], /(https?:\/\/[^\s"'<>]+\/mcp)\b/, 60_000).catch(async (e) => {
    await stopChild(child);
    throw e;
  });
  return { url: m[1]!, command, stop: () => stopChild(child) };
}

interface ColumnRun {
  cells: Map<string, CellResult>;
  notScored: Set<string>;
  url?: string;
  command?: string[];
  error?: string;
  serverLog: string;
  suiteLog: string;
  durationMs: number;
}

async function runColumn(server: HostedServer, column: Column, suite: Suite, dir: string, timeoutMs: number): Promise<ColumnRun> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const started = Date.now();
  const run: ColumnRun = {
    cells: new Map(),
    notScored: new Set(),
    serverLog: relative(ROOT, join(dir, 'server.log')),
    suiteLog: relative(ROOT, join(dir, 'suite.log')),
    durationMs: 0,
  };
  let running: RunningTarget;
  try {
    running =
      column === 'direct'
        ? await startDirect(server, join(dir, 'server.log'))
        : await startBerth(server, column, suite, join(dir, 'server.log'));
  } catch (e) {
    run.error = `could not start: ${(e as Error).message}`;
    run.durationMs = Date.now() - started;
    return run;
  }
  run.url = running.url;
  run.command = running.command;
  const suiteArgs =
    suite === '2025' ? [...NPX_PREFIX, 'server', '--suite', 'all'] : [...NPX_2026, 'server', '--requirements', '2026-07-28'];
  try {
    const r = await runToEnd('npx', [...suiteArgs, '--url', running.url, '-o', join(dir, 'checks')], timeoutMs, join(dir, 'suite.log'));
    const section = r.output.split(/Not scored for 2026-07-28/)[1] ?? '';
    for (const m of section.matchAll(/^\s*[✓✗]\s+(\S+)/gm)) run.notScored.add(m[1]!);
    if (r.timedOut) run.error = `the suite timed out after ${timeoutMs / 1000}s`;
  } finally {
    await running.stop();
  }
  for (const [scenario, file] of checksByScenario(join(dir, 'checks'))) {
    try {
      run.cells.set(scenario, judge(scenario, JSON.parse(readFileSync(file, 'utf8')) as CheckSummary[], file));
    } catch (e) {
      run.cells.set(scenario, notRun('error', `unreadable ${file}: ${(e as Error).message}`));
    }
  }
  run.durationMs = Date.now() - started;
  return run;
}

/** Runs every server's columns for the given suites; exit code 1 if a scenario passes directly but not through berth. */
export async function mainServers(servers: HostedServer[], suites: Suite[], out: string, timeoutMs: number): Promise<number> {
  const cli = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) throw new Error(`${relative(ROOT, cli)} is missing: run \`npm run build\` first`);
  const failing: string[] = [];
  const summary: unknown[] = [];
  const tables: Partial<Record<Suite, MarkdownTable>> = {};
  for (const server of servers) {
    for (const suite of suites) {
      const suiteName = suite === '2025' ? `${SUITE_PACKAGE} --suite all` : `${SUITE_2026} --requirements 2026-07-28`;
      process.stdout.write(`\n== ${server.title}: ${suiteName} ==\n`);
      const runs = {} as Record<Column, ColumnRun>;
      for (const column of COLUMNS) {
        if (column === 'stdio' && !server.stdio) {
          runs[column] = { cells: new Map(), notScored: new Set(), serverLog: '', suiteLog: '', durationMs: 0 };
          continue;
        }
        runs[column] = await runColumn(server, column, suite, join(out, 'servers', server.id, suite, column), Math.max(timeoutMs, 600_000));
        const r = runs[column];
        process.stdout.write(
          `  ${COLUMN_TITLE[column].padEnd(20)} ${r.cells.size} scenarios judged in ${(r.durationMs / 1000).toFixed(1)}s${r.error ? ` (${r.error})` : ''}\n`,
        );
      }
      const notScored = new Set([...COLUMNS].flatMap((c) => [...runs[c].notScored]));
      const scenarios = [...new Set(COLUMNS.flatMap((c) => [...runs[c].cells.keys()]))].sort(
        (a, b) => Number(notScored.has(a)) - Number(notScored.has(b)),
      );
      const cell = (s: string, c: Column): CellResult => {
        if (c === 'stdio' && !server.stdio) return notRun('n/a', 'the server speaks only Streamable HTTP');
        const na = NOT_APPLICABLE[`${server.id}/${c}/${suite}`]?.[s];
        if (na) return notRun('n/a', na);
        return runs[c].cells.get(s) ?? notRun('error', runs[c].error ?? 'no checks.json');
      };

      const header = [`scenario (${suite === '2025' ? '0.1.16' : '2026-07-28'})`, ...COLUMNS.map((c) => COLUMN_TITLE[c])];
      const rows = scenarios.map((s) => [notScored.has(s) ? `${s} (not scored)` : s, ...COLUMNS.map((c) => cellText(cell(s, c)))]);
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
      process.stdout.write(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('-|-')}\n${rows.map(line).join('\n')}\n`);

      const regressions: string[] = [];
      const berthAdds: string[] = [];
      for (const s of scenarios) {
        const direct = cell(s, 'direct').outcome;
        for (const c of ['stdio', 'http'] as const) {
          const b = cell(s, c);
          if (direct === 'pass' && b.outcome !== 'pass' && b.outcome !== 'n/a') {
            const why = b.failures.map((f) => `${f.id}: ${f.errorMessage ?? f.description ?? ''}`).join('; ') || b.reason || '';
            regressions.push(`- ${server.id} ${suite} ${s} [${COLUMN_TITLE[c]}] ${b.outcome.toUpperCase()}: ${why}`);
          }
          if (direct !== 'pass' && b.outcome === 'pass')
            berthAdds.push(`${s} [${COLUMN_TITLE[c]}]${BERTH_ADDS[s] ? `: ${BERTH_ADDS[s]}` : ''}`);
        }
      }
      for (const c of COLUMNS) if (runs[c].error) regressions.push(`- ${server.id} ${suite} [${COLUMN_TITLE[c]}]: ${runs[c].error}`);
      const columns = COLUMNS.filter((c) => c !== 'stdio' || server.stdio);
      const totals = columns.map((c) => `${COLUMN_TITLE[c]} ${scenarios.filter((s) => cell(s, c).outcome === 'pass').length}`);
      process.stdout.write(`passing of ${scenarios.length}: ${totals.join(', ')}\n`);
      if (berthAdds.length) process.stdout.write(`passes through berth, not directly:\n${berthAdds.map((x) => `  ${x}`).join('\n')}\n`);
      failing.push(...regressions);
      const table: MarkdownTable = (tables[suite] ??= { columns: [] as string[], rows: new Map(), notScored: new Set<string>() });
      for (const s of notScored) table.notScored.add(s);
      for (const c of columns) {
        const key = `${server.id} ${COLUMN_TITLE[c]}`;
        table.columns.push(key);
        for (const s of scenarios) (table.rows.get(s) ?? table.rows.set(s, new Map()).get(s)!).set(key, cellText(cell(s, c)));
      }
      summary.push({
        server: server.id,
        title: server.title,
        suite: suiteName,
        columns: Object.fromEntries(
          COLUMNS.map((c) => {
            const { cells: _cells, notScored: _notScored, ...info } = runs[c];
            return [c, { title: COLUMN_TITLE[c], ...info }];
          }),
        ),
        scenarios: scenarios.map((s) => ({
          scenario: s,
          ...(suite === '2026' ? { scored: !notScored.has(s) } : {}),
          results: Object.fromEntries(COLUMNS.map((c) => [c, cell(s, c)])),
        })),
        regressions,
        berthAdds,
      });
    }
  }
  if (failing.length) process.stdout.write(`\nPass directly, not through berth (servers berth did not write):\n${failing.join('\n')}\n`);
  const markdown = join(out, 'servers', 'table.md');
  mkdirSync(dirname(markdown), { recursive: true });
  writeFileSync(markdown, renderMarkdown(servers, tables));
  process.stdout.write(`\ntables for docs/conformance.md: ${relative(ROOT, markdown)}\n`);
  const file = join(out, 'servers', 'summary.json');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ generatedAt: new Date().toISOString(), runs: summary, failing }, null, 2) + '\n');
  process.stdout.write(`summary: ${relative(ROOT, file)}\n`);
  return failing.length ? 1 : 0;
}

interface MarkdownTable {
  /** "server-id column title", in order. */
  columns: string[];
  rows: Map<string, Map<string, string>>;
  notScored: Set<string>;
}

/** One table per suite, every server's columns side by side: what docs/conformance.md shows. */
function renderMarkdown(servers: HostedServer[], tables: Partial<Record<Suite, MarkdownTable>>): string {
  const parts = [`Servers: ${servers.map((s) => `\`${s.id}\` = ${s.title}`).join('; ')}.\n`];
  for (const [suite, table] of Object.entries(tables) as [Suite, MarkdownTable][]) {
    const name = suite === '2025' ? `${SUITE_PACKAGE} --suite all` : `${SUITE_2026} --requirements 2026-07-28`;
    const scenarios = [...table.rows.keys()].sort(
      (a, b) => Number(table.notScored.has(a)) - Number(table.notScored.has(b)) || a.localeCompare(b),
    );
    parts.push(
      `${name}:\n`,
      `| scenario | ${table.columns.join(' | ')} |`,
      `| --- | ${table.columns.map(() => '---').join(' | ')} |`,
      ...scenarios.map(
        (s) =>
          `| ${s}${table.notScored.has(s) ? ' (not scored)' : ''} | ${table.columns.map((c) => table.rows.get(s)!.get(c) ?? '-').join(' | ')} |`,
      ),
      '',
    );
  }
  return parts.join('\n');
}
