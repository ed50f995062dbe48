// README against the real thing: every flag table marked `<!-- flags: COMMAND… -->` matches the commander definition
// (each flag of each command listed, no flag that does not exist, same defaults and choices), and every client example
// in a sh block (`berth call`, `berth connect`, `curl`) runs as written against berth serving examples/berth.yaml.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Command, Option } from 'commander';
import { program } from '../src/cli/main.ts';
import { ROOT, startBerth, type BerthProcess } from './helpers/berth.ts';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

interface Row {
  line: number;
  commands: string[];
  flags: Array<{ long: string; short?: string; choices?: string[] }>;
  /** Per flag: a literal default (backticked in README), 'required', or undefined (—, off, no limit…). */
  defaults: Array<string | undefined>;
}

const spans = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/** The rows of every table right after a `<!-- flags: … -->` marker; problems with the tables' shape go to `bad`. */
function flagRows(readme: string, bad: string[]): Row[] {
  const lines = readme.split('\n');
  const rows: Row[] = [];
  lines.forEach((marker, i) => {
    const m = /^<!-- flags: ([\w ]+) -->$/.exec(marker);
    if (!m) return;
    const marked = m[1]!.trim().split(/\s+/);
    // Cells split on pipes that are not escaped (`a\|b` inside a cell is one cell).
    const cells = (l: string) =>
      l
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((c) => c.trim());
    const header = cells(lines[i + 1] ?? '');
    const [flagCol, defaultCol, commandCol] = ['flag', 'default', 'command'].map((h) => header.findIndex((c) => c.startsWith(h)));
    if (flagCol < 0 || defaultCol < 0) return void bad.push(`README:${i + 2}: a flags table needs "flag" and "default" columns`);
    if (commandCol < 0 && marked.length > 1)
      return void bad.push(`README:${i + 2}: a table for ${marked.join(', ')} needs a "command" column`);
    for (let j = i + 3; j < lines.length && lines[j]!.startsWith('|'); j++) {
      const row = cells(lines[j]!);
      const flags: Row['flags'] = [];
      for (const span of spans(row[flagCol]!)) {
        const f = /^(?:(-[A-Za-z]), )?(--[a-z][a-z0-9-]*)(?: (.+))?$/.exec(span);
        if (!f) {
          bad.push(`README:${j + 1}: cannot read the flag \`${span}\``);
          continue;
        }
        if (flags.some((x) => x.long === f[2])) continue; // `--args JSON` / `--args -`: one flag, two forms
        const alts = f[3]?.split('\\|');
        // Lower-case alternatives are the choices (`stdio\|http`); upper-case ones name a value (`CIDR\|HOST:PORT`).
        const choices = alts && alts.length > 1 && alts.every((a) => /^[a-z0-9-]+$/.test(a)) ? alts : undefined;
        flags.push({ long: f[2]!, short: f[1], choices });
      }
      const given = spans(row[defaultCol]!);
      const plain = row[defaultCol]!.replace(/`[^`]*`/g, '').trim();
      let defaults: Row['defaults'];
      if (given.length === 0) defaults = flags.map(() => (plain === 'required' ? 'required' : undefined));
      else if (given.length === 1) defaults = flags.map(() => given[0]);
      else if (given.length === flags.length) defaults = given;
      else {
        bad.push(`README:${j + 1}: ${given.length} defaults for ${flags.length} flags`);
        continue;
      }
      const named = commandCol < 0 ? [] : spans(row[commandCol]!);
      rows.push({ line: j + 1, commands: named.length ? named : marked, flags, defaults });
    }
  });
  return rows;
}

/** What `--help` promises: commander's default, else a "(default X)" in the description (the config's default). */
function cliDefault(o: Option): string | undefined {
  if (o.mandatory) return 'required';
  const d: unknown = o.defaultValue;
  if (Array.isArray(d)) return d.length ? d.join(', ') : undefined;
  if (d !== undefined && d !== false) return String(d);
  return /\(default ([^\s,;)]+)/.exec(o.description)?.[1];
}

/** Every way README's flag tables and the CLI disagree, one line each. */
export function flagProblems(readme: string, cli: Command): string[] {
  const problems: string[] = [];
  const rows = flagRows(readme, problems);
  const seen = new Set<string>();
  for (const row of rows) {
    for (const [k, f] of row.flags.entries()) {
      for (const name of row.commands) {
        const cmd = cli.commands.find((c) => c.name() === name);
        if (!cmd) {
          problems.push(`README:${row.line}: no command "berth ${name}"`);
          continue;
        }
        const where = `README:${row.line}: berth ${name} ${f.long}`;
        const o = cmd.options.find((x) => x.long === f.long);
        if (!o) {
          problems.push(`${where}: no such flag`);
          continue;
        }
        if (seen.has(`${name} ${f.long}`)) problems.push(`${where}: listed twice`);
        seen.add(`${name} ${f.long}`);
        if ((f.short ?? o.short) !== undefined && f.short !== o.short)
          problems.push(`${where}: short form ${o.short ?? 'none'} in the CLI, ${f.short ?? 'none'} in README`);
        const want = o.argChoices?.join('|');
        if (want !== f.choices?.join('|'))
          problems.push(`${where}: choices ${want ?? 'none'} in the CLI, ${f.choices?.join('|') ?? 'none'} in README`);
        if (cliDefault(o) !== row.defaults[k])
          problems.push(`${where}: default ${cliDefault(o) ?? 'none'} in the CLI, ${row.defaults[k] ?? 'none'} in README`);
      }
    }
  }
  for (const cmd of cli.commands) {
    for (const o of cmd.options) {
      if (!seen.has(`${cmd.name()} ${o.long}`)) problems.push(`berth ${cmd.name()} ${o.long}: missing from README's flag tables`);
    }
  }
  return problems;
}

describe("README's flag tables", () => {
  test('match the CLI: every flag of every command, its default and choices, and nothing else', () => {
    assert.deepEqual(flagProblems(README, program), []);
    assert.ok(flagRows(README, []).length > 40, 'the tables were found');
  });

  test('a missing row, a wrong default, wrong choices and a flag that does not exist are each caught', () => {
    const broken = README.replace(/^\| `--body-timeout`.*\n/m, '')
      .replace('| `--port` | `8787` |', '| `--port` | `8788` |')
      .replace('`--upstream stdio\\|http`', '`--upstream stdio\\|https`')
      .replace('| `--json` | `call` | off |', '| `--json` | `connect` | off |')
      .replace(/^(\| `--drain-timeout`.*\n)/m, '$1| `--no-such-flag` | — | invented |\n');
    const problems = flagProblems(broken, program).map((p) => p.replace(/^README:\d+: /, ''));
    assert.deepEqual(
      problems.sort(),
      [
        "berth call --json: missing from README's flag tables",
        "berth run --body-timeout: missing from README's flag tables",
        'berth run --no-such-flag: no such flag',
        'berth run --port: default 8787 in the CLI, 8788 in README',
        'berth run --upstream: choices stdio|http in the CLI, stdio|https in README',
        'berth connect --json: no such flag',
      ].sort(),
    );
  });
});

/** How each README example must behave; every example needs exactly one of these, and each is used. */
type Step = [RegExp, string | null]; // once stdout shows this, type that (null: close stdin, as Ctrl-D would)
const EXAMPLES: Array<{ line: RegExp; stdout: RegExp; stderr?: RegExp; steps?: Step[] }> = [
  {
    // The interactive session README suggests: write a note, then delete it, confirming in the form. Its output is a
    // pipe here, so berth connect asks in plain numbered prompts (a terminal gets the menus; test/client.test.ts).
    line: /^berth connect \S+\s+#/,
    steps: [
      [/Tools \(\d+\):[\s\S]*What next\?[\s\S]*Choose 1-5: $/, '1\n'],
      [/Tool[\s\S]*Choose 1-\d+: $/, 'note_write\n'],
      [/name — Note name/, 'todo\n'],
      [/content — /, 'buy milk\n'],
      [/Created note "todo"[\s\S]*What next\?[\s\S]*Choose 1-5: $/, '1\n'],
      [/Tool[\s\S]*Choose 1-\d+: $/, 'note_delete\n'],
      [/name — Note name/, 'todo\n'],
      [/force — [\s\S]*\(leave empty\)[\s\S]*Choose 1-3: $/, '3\n'],
      [/The server asks: Delete note "todo"[\s\S]*Answer\?[\s\S]*Choose 1-3: $/, '1\n'],
      [/Yes, delete this note[\s\S]*Choose 1-2 \(Enter for 2\): $/, '1\n'],
      [/Reason \(optional\)/, '\n'],
      [/Deleted "todo"[\s\S]*What next\?[\s\S]*Choose 1-5: $/, null],
    ],
    stdout: /Deleted "todo"\./,
    stderr: /stdin closed; quitting/,
  },
  {
    line: /--call note_write --arg name=todo/,
    steps: [[/content — /, 'buy milk\r']],
    stdout: /calling note_write \{"name":"todo","content":"buy milk"\}[\s\S]*Created note "todo" \(8 bytes\)/,
  },
  { line: /call \S+ note_write --args/, stdout: /^Created note "todo" \(8 bytes\)\.\n$/ },
  { line: /workspace_reindex --arg steps=3/, stdout: /^Indexed 0 note\(s\), 0 words in 3 stages/, stderr: /progress 3\/3 Stage 3\/3/ },
  { line: /workspace_reindex --args - --json/, stdout: /"structuredContent": \{\s*"status": "completed",\s*"stepsDone": 2,/ },
  { line: /workspace_roots --root \/tmp/, stdout: /^tmp: file:\/\/\/tmp$/m },
  { line: /curl -s \S+\/healthz/, stdout: /^\{"status":"ok","runtimes":\{"default":\{/ },
  { line: /curl -s \S+\/metrics/, stdout: /^berth_sessions_live\{runtime="default"\} \d+$/m },
];

/** Lines of README's sh blocks that talk to a running berth. */
function clientExamples(readme: string): string[] {
  return [...readme.matchAll(/^```sh\n([\s\S]*?)^```/gm)]
    .flatMap((b) => b[1]!.split('\n'))
    .filter((l) => /\bberth (call|connect)\b|^curl /.test(l));
}

const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

/** Runs one example with sh, answering its prompts; resolves when it exits. */
function run(
  line: string,
  cwd: string,
  path: string,
  steps: Step[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawn('sh', ['-c', line], { cwd, env: { ...process.env, PATH: path }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let screen = ''; // what the next step waits for: stdout since the last answer, escape codes removed
  let step = 0;
  const next = () => {
    while (step < steps.length && steps[step]![0].test(screen)) {
      screen = '';
      const input = steps[step++]![1];
      if (input === null) p.stdin.end();
      else p.stdin.write(input);
    }
  };
  p.stdout.on('data', (d) => {
    stdout += d;
    screen += strip(String(d));
    next();
  });
  p.stderr.on('data', (d) => (stderr += d));
  if (!steps.length) p.stdin.end(); // nothing to answer: a command that reads stdin sees it closed
  return new Promise((resolve, reject) => {
    // Bounded: a prompt the steps do not expect would otherwise wait forever.
    const t = setTimeout(() => {
      p.kill();
      reject(
        new Error(`\`${line}\` still running after 120 s, waiting for ${steps[step]?.[0]}\nstdout:\n${strip(stdout)}\nstderr:\n${stderr}`),
      );
    }, 120_000);
    p.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout: strip(stdout), stderr });
    });
  });
}

describe("README's client examples, against berth serving examples/berth.yaml", () => {
  let berth: BerthProcess;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-readme-'));
    // `berth` on the PATH, as `npm install -g` or `npm link` would put it.
    writeFileSync(join(dir, 'berth'), `#!/bin/sh\nexec '${process.execPath}' '${join(ROOT, 'bin/berth.js')}' "$@"\n`);
    chmodSync(join(dir, 'berth'), 0o755);
    // The file itself, on a free port (8787 may be taken).
    berth = await startBerth(['serve', '--config', join(ROOT, 'examples/berth.yaml'), '--port', '0']);
  });
  after(async () => {
    await berth?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('each runs as written (but for the port), exits 0 and prints what it should', async () => {
    const examples = clientExamples(README);
    assert.ok(examples.length >= EXAMPLES.length, `found ${examples.length} examples`);
    const origin = new URL(berth.url).origin;
    const used = new Set<number>();
    for (const example of examples) {
      const matching = EXAMPLES.flatMap((e, i) => (e.line.test(example) ? [i] : []));
      assert.equal(matching.length, 1, `README example \`${example}\` needs exactly one entry in EXAMPLES (has ${matching.length})`);
      const e = EXAMPLES[matching[0]!]!;
      used.add(matching[0]!);
      const r = await run(example.replaceAll('http://127.0.0.1:8787', origin), dir, `${dir}:${process.env.PATH}`, e.steps);
      const context = `\`${example}\`\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
      assert.equal(r.code, 0, context);
      assert.match(r.stdout, e.stdout, context);
      if (e.stderr) assert.match(r.stderr, e.stderr, context);
    }
    assert.deepEqual(
      EXAMPLES.map((_, i) => i).filter((i) => !used.has(i)),
      [],
      'every EXAMPLES entry matches a README example',
    );
  });
});
