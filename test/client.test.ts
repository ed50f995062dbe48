// The terminal client: form logic as pure functions, `berth call` and `berth connect` against real berth
// processes hosting the probe server, sampling forwarded to a fake chat-completions server on loopback.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fieldsOf, parseField, validateContent, type Field } from '../src/client/form.js';
import { toolArgs } from '../src/client/args.js';
import { elicitationAnswerer } from '../src/client/call.js';
import { describeError, endpointUrl } from '../src/client/session.js';
import { forwardSampling, toChatRequest } from '../src/client/sampling.js';
import { plainOutput, Terminal } from '../src/client/terminal.js';
import { freePort } from '../src/util/free-port.js';
import { ROOT, runBerth, type BerthProcess } from './helpers/berth.js';
import { startProxy } from './helpers/proxy.js';

const FORM = {
  type: 'object',
  properties: {
    name: { type: 'string', title: 'Your name', minLength: 2, maxLength: 5 },
    email: { type: 'string', format: 'email' },
    site: { type: 'string', format: 'uri' },
    born: { type: 'string', format: 'date' },
    at: { type: 'string', format: 'date-time' },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    ratio: { type: 'number', minimum: 0.5, default: 1.5 },
    agree: { type: 'boolean', default: false },
    color: { type: 'string', enum: ['r', 'g'], enumNames: ['Red', 'Green'] },
    size: {
      type: 'string',
      oneOf: [
        { const: 's', title: 'Small' },
        { const: 'l', title: 'Large' },
      ],
      default: 's',
    },
    tags: {
      type: 'array',
      items: {
        anyOf: [
          { const: 'a', title: 'Alpha' },
          { const: 'b', title: 'Beta' },
        ],
      },
      minItems: 1,
      maxItems: 1,
    },
    plain: { type: 'string', enum: ['x', 'y'] },
  },
  required: ['name', 'age'],
};
const fields = fieldsOf(FORM);
const field = (n: string) => fields.find((f) => f.name === n)!;
const ok = (f: Field, raw: string) => {
  const r = parseField(f, raw);
  assert.ok(r.ok, `expected "${raw}" to be accepted for ${f.name}: ${!r.ok && r.error}`);
  return r.value;
};
const refused = (f: Field, raw: string) => {
  const r = parseField(f, raw);
  assert.ok(!r.ok, `expected "${raw}" to be refused for ${f.name}`);
  return r.error;
};

describe('form from schema', () => {
  test('every field kind, with titles, requiredness, bounds and defaults', () => {
    assert.deepEqual(
      fields.map((f) => [f.name, f.kind, f.required]),
      [
        ['name', 'string', true],
        ['email', 'string', false],
        ['site', 'string', false],
        ['born', 'string', false],
        ['at', 'string', false],
        ['age', 'number', true],
        ['ratio', 'number', false],
        ['agree', 'boolean', false],
        ['color', 'choice', false],
        ['size', 'choice', false],
        ['tags', 'multi', false],
        ['plain', 'choice', false],
      ],
    );
    assert.equal(field('name').label, 'Your name');
    assert.deepEqual(field('color'), {
      name: 'color',
      label: 'color',
      description: undefined,
      required: false,
      kind: 'choice',
      default: undefined,
      choices: [
        { value: 'r', title: 'Red' },
        { value: 'g', title: 'Green' },
      ],
    });
    assert.deepEqual((field('size') as { choices: unknown }).choices, [
      { value: 's', title: 'Small' },
      { value: 'l', title: 'Large' },
    ]);
    assert.equal((field('age') as { integer: boolean }).integer, true);
    assert.equal(fieldsOf({ properties: { o: { type: 'object' } } })[0]!.kind, 'json');
  });

  test('strings: length in characters, formats', () => {
    refused(field('name'), 'A');
    refused(field('name'), 'Abcdef');
    assert.equal(ok(field('name'), '😀😀'), '😀😀'); // two characters, four UTF-16 units
    assert.match(refused(field('name'), ''), /Your name is required/);
    ok(field('email'), 'ada@example.org');
    refused(field('email'), 'ada@');
    ok(field('site'), 'https://example.org/x');
    refused(field('site'), 'example.org');
    ok(field('born'), '1815-12-10');
    refused(field('born'), '1815-13-10');
    refused(field('born'), '1815-02-30');
    ok(field('at'), '2025-01-02T03:04:05Z');
    refused(field('at'), '2025-01-02 noon');
    assert.equal(ok(field('email'), ''), undefined); // optional, left empty
  });

  test('numbers: integer, bounds, defaults', () => {
    assert.equal(ok(field('age'), '42'), 42);
    refused(field('age'), '4.5');
    refused(field('age'), '-1');
    refused(field('age'), '151');
    refused(field('age'), 'forty');
    refused(field('age'), '12abc');
    assert.equal(ok(field('ratio'), ''), undefined); // a default is pre-filled at the prompt, never put back
    assert.equal(ok(field('ratio'), '2.25'), 2.25);
    refused(field('ratio'), '0.4');
  });

  test('booleans, enums by value, title or number, multi-select bounds', () => {
    assert.equal(ok(field('agree'), 'yes'), true);
    assert.equal(ok(field('agree'), 'n'), false);
    assert.equal(ok(field('agree'), ''), undefined);
    refused(field('agree'), 'maybe');
    assert.equal(ok(field('color'), 'Green'), 'g');
    assert.equal(ok(field('color'), '1'), 'r');
    assert.equal(ok(field('size'), ''), undefined);
    refused(field('color'), 'blue');
    refused(field('color'), '3');
    assert.deepEqual(ok(field('tags'), 'Beta'), ['b']);
    refused(field('tags'), 'a, b');
    refused(field('tags'), 'c');
  });

  test('content checked before sending: required, types, unknown keys; no default the user did not give is added', () => {
    assert.deepEqual(validateContent(fields, { name: 'Ada', age: 36 }), { ok: true, content: { name: 'Ada', age: 36 } });
    assert.deepEqual(validateContent(fields, { name: 'Ada', age: 36, size: 'l', tags: ['b'] }), {
      ok: true,
      content: { name: 'Ada', age: 36, size: 'l', tags: ['b'] },
    });
    const bad = validateContent(fields, { name: 'A', age: '36', color: 'blue', tags: ['a', 'a'], extra: 1 });
    assert.equal(bad.ok, false);
    assert.deepEqual(!bad.ok && bad.errors, [
      'extra: not asked for',
      'Your name: at least 2 characters',
      'age: expected a number',
      'color: one of r, g',
      'tags: each choice at most once',
    ]);
    const missing = validateContent(fields, {});
    assert.deepEqual(!missing.ok && missing.errors, ['Your name is required', 'age is required']);
  });

  test('--arg values typed by the tool schema, merged over --args', async () => {
    const schema = { properties: { steps: { type: 'integer' }, text: { type: 'string' }, obj: { type: 'object' } } };
    assert.deepEqual(await toolArgs('{"text":"a","steps":1}', ['steps=3', 'text=42', 'obj={"k":1}'], schema), {
      text: '42',
      steps: 3,
      obj: { k: 1 },
    });
    await assert.rejects(toolArgs(undefined, ['steps=three'], schema), /steps: expected a number/);
    await assert.rejects(toolArgs('[1]', [], schema), /JSON object/);
  });

  test('an --arg name the tool does not have is refused, naming its parameters', async () => {
    const schema = {
      type: 'object',
      properties: { steps: { type: 'integer' }, delayMs: { type: 'integer' } },
      additionalProperties: false,
    };
    await assert.rejects(toolArgs(undefined, ['step=3'], schema), {
      message: '--arg step: the tool has no parameter "step"; its parameters: steps, delayMs',
    });
    await assert.rejects(toolArgs(undefined, ['x=1'], { type: 'object' }), /the tool has no parameter "x"; it takes no parameters/);
    // A schema that lets in any name, or no schema at all (the tool is not known), lets it through.
    assert.deepEqual(await toolArgs(undefined, ['x=1'], { type: 'object', additionalProperties: true }), { x: 1 });
    assert.deepEqual(await toolArgs(undefined, ['x=1'], undefined), { x: 1 });
  });

  test('--answer-elicitation sends what it says, no defaults added', async () => {
    const answer = elicitationAnswerer('{"name":"Ada","age":36}', () => assert.fail('fits'));
    assert.deepEqual(await answer({ message: 'm', requestedSchema: FORM as never }), {
      action: 'accept',
      content: { name: 'Ada', age: 36 },
    });
  });

  test('errors name the URL and the cause', async () => {
    assert.throws(() => endpointUrl('localhost:8787/mcp'), /expected an http:\/\/ or https:\/\/ URL/);
    assert.throws(() => endpointUrl('127.0.0.1:8787/mcp'), /is not a URL/);
    assert.throws(() => endpointUrl('not a url'), {
      message: '"not a url" is not a URL; expected the MCP endpoint, e.g. http://127.0.0.1:8787/mcp',
    });
    const url = `http://127.0.0.1:${await freePort()}/mcp`;
    const refused = await fetch(url).catch((e: unknown) => e);
    assert.equal(describeError(refused, url), `cannot reach ${url}: ECONNREFUSED ${new URL(url).host}`);
    const blocked = await fetch('http://127.0.0.1:1/mcp').catch((e: unknown) => e); // a port fetch refuses to use
    assert.equal(describeError(blocked, 'http://127.0.0.1:1/mcp'), 'cannot reach http://127.0.0.1:1/mcp: bad port');
  });
});

/**
 * A Terminal on streams that are not terminals: `waitFor` waits (bounded) until what it printed since the last wait
 * matches, with colour and cursor escapes taken out when asked; `all` is everything printed. `plain: false` draws
 * inquirer's prompts all the same (as on a terminal).
 */
function streamTerminal(o: { stripEscapes?: boolean; plain?: boolean } = {}) {
  const input = new PassThrough();
  const output = new PassThrough();
  let screen = '';
  let all = '';
  output.on('data', (d) => {
    all += d;
    screen += o.stripEscapes ? String(d).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '') : d;
  });
  const waitFor = async (re: RegExp) => {
    for (let i = 0; i < 100 && !re.test(screen); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(screen, re);
    screen = '';
  };
  return { input, term: new Terminal(input, output, { plain: o.plain }), waitFor, all: () => all };
}

describe('the terminal form drawn by inquirer, on streams', () => {
  test('every prompt kind: bad values refused with a message and corrected, choices moved with arrow keys', async () => {
    const { input, term, waitFor } = streamTerminal({ plain: false });
    const answer = term.elicit({
      message: 'Register',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', minLength: 2 },
          age: { type: 'integer', maximum: 150 },
          agree: { type: 'boolean', default: false },
          size: {
            type: 'string',
            oneOf: [
              { const: 's', title: 'Small' },
              { const: 'l', title: 'Large' },
            ],
          },
        },
        required: ['name', 'age'],
      },
    });
    const DOWN = '\x1b[B';
    const UP = '\x1b[A';
    await waitFor(/The server asks: Register[\s\S]*Accept/);
    input.write('\r');
    await waitFor(/name \(2\.\.∞ chars\)/);
    input.write('A\r');
    await waitFor(/name: at least 2 characters/);
    input.write('da\r');
    await waitFor(/age \(integer, -∞\.\.150\)/);
    input.write('200\r');
    await waitFor(/age: at most 150/);
    input.write('\x7f\x7f\x7f36\r');
    await waitFor(/agree \(optional\)[\s\S]*❯ no/);
    input.write(UP + '\r');
    await waitFor(/size \(optional\)[\s\S]*Small \(s\)[\s\S]*\(leave empty\)/);
    input.write(DOWN + '\r');
    assert.deepEqual(await answer, { action: 'accept', content: { name: 'Ada', age: 36, agree: true, size: 'l' } });
  });

  test('defaults are pre-filled and can be kept, edited or cleared; a multi-select sends only what stays ticked', async () => {
    const { input, term, waitFor } = streamTerminal({ stripEscapes: true, plain: false });
    const answer = term.elicit({
      message: 'Preferences',
      requestedSchema: {
        type: 'object',
        properties: {
          nick: { type: 'string', default: 'ada' },
          city: { type: 'string', default: 'Paris' },
          count: { type: 'integer', default: 3 },
          agree: { type: 'boolean', default: true },
          tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, default: ['a', 'b'] },
          more: { type: 'array', items: { type: 'string', enum: ['x', 'y'] }, default: ['x'] },
        },
      },
    });
    const DOWN = '\x1b[B';
    await waitFor(/The server asks: Preferences[\s\S]*Accept/);
    input.write('\r');
    await waitFor(/nick \(optional\)[\s\S]*ada/);
    input.write('\x7f\x7f\x7f\r'); // the default deleted: left empty
    await waitFor(/city \(optional\)[\s\S]*Paris/);
    input.write('\r'); // kept
    await waitFor(/count \(integer, optional\)[\s\S]*3/);
    input.write('\x7f4\r'); // edited
    await waitFor(/agree \(optional\)[\s\S]*❯ yes[\s\S]*\(leave empty\)/);
    input.write(DOWN + DOWN + '\r'); // a pre-selected default, left empty
    await waitFor(/tags \(comma-separated, optional\)[\s\S]*◉ a[\s\S]*◉ b[\s\S]*◯ c/);
    input.write(' \r'); // a unticked
    await waitFor(/more \(comma-separated, optional\)[\s\S]*◉ x/);
    input.write(' \r'); // every default unticked: not sent at all
    assert.deepEqual(await answer, { action: 'accept', content: { city: 'Paris', count: 4, tags: ['b'] } });
  });

  for (const plain of [false, true]) {
    test(`an ended input cancels the form at once (plain: ${plain})`, async () => {
      const { input, term, all } = streamTerminal({ plain });
      const answer = term.elicit({ message: 'Anyone?', requestedSchema: { type: 'object', properties: { a: { type: 'string' } } } });
      input.end();
      assert.deepEqual(await answer, { action: 'cancel' });
      assert.ok(term.inputClosed);
      assert.match(all(), /stdin closed: the elicitation is cancelled/);
    });
  }
});

describe('plain prompts: output that is not a terminal', () => {
  test('chosen when the output is not a TTY, or NO_COLOR or TERM=dumb asks for it', () => {
    const tty = Object.assign(new PassThrough(), { isTTY: true });
    assert.equal(plainOutput(new PassThrough(), {}), true);
    assert.equal(plainOutput(tty, {}), false);
    assert.equal(plainOutput(tty, { NO_COLOR: '1' }), true);
    assert.equal(plainOutput(tty, { NO_COLOR: '' }), false); // set but empty: not asked for
    assert.equal(plainOutput(tty, { TERM: 'dumb' }), true);
    assert.equal(new Terminal(new PassThrough(), new PassThrough()).plain, true);
  });

  test('every prompt kind as a numbered list and a line, answers piped in at once; bad ones said and asked again', async () => {
    const { input, term, all } = streamTerminal();
    const answer = term.elicit({
      message: 'Register',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', minLength: 2 },
          age: { type: 'integer', maximum: 150 },
          agree: { type: 'boolean', default: false },
          size: {
            type: 'string',
            oneOf: [
              { const: 's', title: 'Small' },
              { const: 'l', title: 'Large' },
            ],
          },
          nick: { type: 'string', default: 'ada' },
          city: { type: 'string', default: 'Paris' },
          count: { type: 'integer', default: 3 },
          tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, default: ['a', 'b'] },
          more: { type: 'array', items: { type: 'string', enum: ['x', 'y'] }, default: ['x'] },
        },
        required: ['name', 'age'],
      },
    });
    const lines = ['', '1', 'A', 'Ada', '200', '36', 'yes', 'Large (l)', '-', '', '4', 'z', '3, a', '-'];
    input.end(lines.map((l) => `${l}\n`).join('')); // ended at once: every line is still an answer
    assert.deepEqual(await answer, {
      action: 'accept',
      content: { name: 'Ada', age: 36, agree: true, size: 'l', city: 'Paris', count: 4, tags: ['a', 'c'] },
    });
    const out = all();
    assert.ok(!out.includes('\x1b'), `no escape codes:\n${out}`);
    const expected = [
      'The server asks: Register',
      'Answer?',
      '  1) Accept (fill in the form)',
      '  2) Decline',
      '  3) Cancel',
      'Choose 1-3: ',
      '! no answer: choose 1-3',
      'Choose 1-3: 1',
      'name (2..∞ chars): A',
      '! name: at least 2 characters',
      'name (2..∞ chars): Ada',
      'age (integer, -∞..150): 200',
      '! age: at most 150',
      'age (integer, -∞..150): 36',
      'agree (optional)',
      '  1) yes',
      '  2) no',
      '  3) (leave empty)',
      'Choose 1-3 (Enter for 2): yes',
      'size (optional)',
      '  1) Small (s)',
      '  2) Large (l)',
      '  3) (leave empty)',
      'Choose 1-3: Large (l)',
      'nick (optional) [ada] (Enter keeps it, - leaves it empty): -',
      'city (optional) [Paris] (Enter keeps it, - leaves it empty): ',
      'count (integer, optional) [3] (Enter keeps it, - leaves it empty): 4',
      'tags (comma-separated, optional)',
      '  1) [x] a',
      '  2) [x] b',
      '  3) [ ] c',
      'Choose any of 1-3, comma-separated (Enter keeps 1, 2, - for none): z',
      '! "z" is not one of the choices: answer 1-3 or a name as listed',
      'Choose any of 1-3, comma-separated (Enter keeps 1, 2, - for none): 3, a',
      'more (comma-separated, optional)',
      '  1) [x] x',
      '  2) [ ] y',
      'Choose any of 1-2, comma-separated (Enter keeps 1, - for none): -',
    ];
    assert.equal(out, `\n${expected.join('\n')}\n`);
  });

  test('a sampling request and a menu, answered by number and by name; progress as lines', async () => {
    const { input, term, all } = streamTerminal();
    const reply = term.sample({ messages: [{ role: 'user', content: { type: 'text', text: 'Say hi' } }], maxTokens: 5 });
    input.write('Reply\n\nhello\n');
    assert.deepEqual(await reply, { role: 'assistant', content: { type: 'text', text: 'hello' }, model: 'human', stopReason: 'endTurn' });
    term.progress({ progress: 1, total: 2, message: 'half' });
    const pick = term.menu('What next?', [
      { name: 'Call a tool', value: 'tool' },
      { name: 'Quit', value: 'quit' },
    ]);
    input.write('2\n');
    assert.equal(await pick, 'quit');
    const chosen = term.choose('Tool', [
      { name: 'echo', value: 1 },
      { name: 'echo2', value: 2 },
    ]);
    input.end('echo2\n');
    assert.equal(await chosen, 2);
    const out = all();
    assert.ok(!out.includes('\x1b'), `no escape codes:\n${out}`);
    assert.match(
      out,
      /Answer\?\n {2}1\) Reply\n {2}2\) Decline\nChoose 1-2: Reply\nReply: \n! Reply: an answer is required\nReply: hello\n/,
    );
    assert.match(
      out,
      /progress 1\/2 half\nWhat next\?\n {2}1\) Call a tool\n {2}2\) Quit\nChoose 1-2: 2\nTool\n {2}1\) echo\n {2}2\) echo2\nChoose 1-2: echo2\n$/,
    );
  });
});

/** A chat-completions endpoint that answers "echo: <last user message>" and records what it got. */
async function fakeModel(): Promise<{ url: string; server: Server; seen: Array<{ auth?: string; body: Record<string, unknown> }> }> {
  const seen: Array<{ auth?: string; body: Record<string, unknown> }> = [];
  const server = createServer(async (req, res) => {
    let b = '';
    for await (const c of req) b += c;
    if (req.url !== '/v1/chat/completions') return void res.writeHead(404).end();
    const body = JSON.parse(b);
    seen.push({ auth: req.headers.authorization, body });
    const last = body.messages.at(-1).content;
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        model: 'fake-1',
        choices: [{ message: { role: 'assistant', content: `echo: ${last}` }, finish_reason: 'length' }],
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, server, seen };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function berthCli(
  args: string[],
  opts: { stdin?: string; env?: Record<string, string>; onStderr?: (all: string) => void } = {},
): Promise<Run> {
  const p = spawn(process.execPath, ['bin/berth.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => {
    stderr += d;
    opts.onStderr?.(stderr);
  });
  p.stdin.end(opts.stdin ?? '');
  return new Promise((r) => p.once('close', (code) => r({ code, stdout, stderr })));
}

describe('berth call against berth', () => {
  let b: BerthProcess;
  let model: Awaited<ReturnType<typeof fakeModel>>;
  before(async () => {
    b = await runBerth(['--isolation', 'process']);
    model = await fakeModel();
  });
  after(async () => {
    await b.stop();
    model.server.close();
  });
  const call = (tool: string, ...rest: string[]) => berthCli(['call', b.url, tool, ...rest]);

  test('prints the text result; --json the whole result; --args - reads stdin', async () => {
    const r = await call('echo', '--args', '{"text":"hello"}');
    assert.deepEqual([r.code, r.stdout], [0, 'hello\n']);
    const j = await berthCli(['call', b.url, 'echo', '--args', '-', '--json'], { stdin: '{"text":"from stdin"}' });
    assert.equal(j.code, 0);
    assert.deepEqual(JSON.parse(j.stdout).content, [{ type: 'text', text: 'from stdin' }]);
  });

  test('elicitation answered from --answer-elicitation: accept, decline, cancel, and content that does not fit', async () => {
    const accept = await call('ask', '--args', '{"question":"name?"}', '--answer-elicitation', '{"answer":"Ada"}');
    assert.deepEqual([accept.code, JSON.parse(accept.stdout)], [0, { action: 'accept', content: { answer: 'Ada' } }]);
    const decline = await call('ask', '--args', '{"question":"name?"}', '--answer-elicitation', 'decline');
    assert.deepEqual([decline.code, JSON.parse(decline.stdout)], [0, { action: 'decline' }]);
    const cancel = await call('ask', '--args', '{"question":"name?"}', '--answer-elicitation', 'cancel');
    assert.deepEqual(JSON.parse(cancel.stdout), { action: 'cancel' });
    // Not sent as is: the form requires "answer"; the server gets a cancel and the script a failure.
    const wrong = await call('ask', '--args', '{"question":"name?"}', '--answer-elicitation', '{"reply":"Ada"}');
    assert.equal(wrong.code, 1);
    assert.deepEqual(JSON.parse(wrong.stdout), { action: 'cancel' });
    assert.match(wrong.stderr, /does not fit the form "name\?": reply: not asked for; answer is required/);
  });

  test('sampling answered from --answer-sampling, or forwarded to a chat-completions endpoint', async () => {
    const typed = await call('sample', '--args', '{"prompt":"hi"}', '--answer-sampling', 'typed reply');
    assert.deepEqual([typed.code, JSON.parse(typed.stdout)], [0, { type: 'text', text: 'typed reply' }]);
    const fwd = await berthCli(
      ['call', b.url, 'sample', '--args', '{"prompt":"to the model"}', '--sampling-endpoint', model.url, '--sampling-model', 'm1'],
      { env: { OPENAI_API_KEY: 'sk-test' } },
    );
    assert.deepEqual([fwd.code, JSON.parse(fwd.stdout)], [0, { type: 'text', text: 'echo: to the model' }]);
    const got = model.seen.at(-1)!;
    assert.equal(got.auth, 'Bearer sk-test');
    assert.deepEqual(got.body, { model: 'm1', messages: [{ role: 'user', content: 'to the model' }], max_tokens: 50 });
  });

  test('roots from --root; progress and log lines on stderr', async () => {
    const r = await call('roots', '--root', '/tmp', '--root', 'src');
    assert.deepEqual(JSON.parse(r.stdout).roots, [
      { uri: 'file:///tmp', name: 'tmp' },
      { uri: `file://${ROOT}src`, name: 'src' },
    ]);
    const p = await call('progress', '--arg', 'steps=3', '--arg', 'delayMs=20');
    assert.deepEqual([p.code, p.stdout], [0, 'done 3\n']);
    assert.match(p.stderr, /progress 1\/3 step 1\nprogress 2\/3 step 2\nprogress 3\/3 step 3\n/);
    const l = await call('log', '--args', '{"message":"note this"}');
    assert.deepEqual([l.code, l.stdout, l.stderr], [0, 'logged\n', '[info] note this\n']);
  });

  test('a call survives a network cut: the stream resumes and no progress is lost', async () => {
    const proxy = await startProxy(b.url);
    try {
      let cut = false;
      const r = await berthCli(['call', proxy.url, 'progress', '--args', '{"steps":10,"delayMs":250}'], {
        onStderr: (all) => {
          if (!cut && all.includes('progress 3/10')) {
            cut = true;
            proxy.sever();
            proxy.refuseFor(1500); // the first reconnection attempts fail too
          }
        },
      });
      assert.ok(cut);
      assert.deepEqual([r.code, r.stdout], [0, 'done 10\n']);
      assert.deepEqual(
        r.stderr.trim().split('\n'),
        Array.from({ length: 10 }, (_, i) => `progress ${i + 1}/10 step ${i + 1}`),
      );
    } finally {
      await proxy.close();
    }
  });

  test('exit codes: 1 for an unknown tool or an isError result, 2 when nothing answers', async () => {
    const unknown = await call('nosuch');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /Tool nosuch not found/);
    assert.match(unknown.stderr, /nosuch reported an error/);
    const invalid = await call('echo', '--args', '{"text":5}', '--json');
    assert.equal(invalid.code, 1);
    assert.equal(JSON.parse(invalid.stdout).isError, true);
    const down = await berthCli(['call', 'http://127.0.0.1:1/mcp', 'echo']);
    assert.equal(down.code, 2);
  });

  test('an --arg the tool does not have is refused, naming its parameters', async () => {
    const typo = await call('progress', '--arg', 'step=3');
    assert.equal(typo.code, 1);
    assert.equal(typo.stderr, 'berth call: --arg step: the tool has no parameter "step"; its parameters: steps, delayMs\n');
    const noTool = await call('progres', '--arg', 'steps=3');
    assert.equal(noTool.code, 1);
    assert.match(noTool.stderr, /no tool "progres" on the server \(tools: echo, .*progress/);
  });

  test('an unreachable or malformed URL: the message names the URL and the cause', async () => {
    const url = `http://127.0.0.1:${await freePort()}/mcp`;
    for (const cmd of ['call', 'connect']) {
      const down = await berthCli(cmd === 'call' ? ['call', url, 'echo'] : ['connect', url]);
      assert.deepEqual([down.code, down.stderr], [2, `berth ${cmd}: cannot reach ${url}: ECONNREFUSED ${new URL(url).host}\n`]);
    }
    const bad = await berthCli(['call', '127.0.0.1:8787/mcp', 'echo']);
    assert.deepEqual(
      [bad.code, bad.stderr],
      [2, 'berth call: "127.0.0.1:8787/mcp" is not a URL; expected the MCP endpoint, e.g. http://127.0.0.1:8787/mcp\n'],
    );
  });

  test('berth connect with stdin closed ends with a message instead of waiting; --call goes straight to the call', async () => {
    const menu = await berthCli(['connect', b.url]);
    assert.deepEqual([menu.code, menu.stderr], [0, 'berth connect: stdin closed; quitting\n']);
    const direct = await berthCli(['connect', b.url, '--call', 'echo', '--arg', 'text=straight']);
    assert.equal(direct.code, 0);
    assert.doesNotMatch(direct.stdout, /Tools \(/);
    assert.match(direct.stdout, /calling echo \{"text":"straight"\}\nstraight\n$/);
    const asked = await berthCli(['connect', b.url, '--call', 'echo']);
    assert.deepEqual(
      [asked.code, asked.stderr],
      [1, 'berth connect: stdin closed before every question was answered; ending the session\n'],
    );
    // Answers piped in and ended at once: the question is answered before the end of input is noticed.
    const piped = await berthCli(['connect', b.url, '--call', 'echo'], { stdin: 'piped in\n' });
    assert.deepEqual([piped.code, piped.stderr], [0, '']);
    assert.match(piped.stdout, /calling echo \{"text":"piped in"\}\npiped in\n$/);
    const elicited = await berthCli(['connect', b.url, '--call', 'ask', '--args', '{"question":"anyone?"}']);
    assert.equal(elicited.code, 0);
    assert.match(elicited.stdout, /stdin closed: the elicitation is cancelled\n[\s\S]*\{"action":"cancel"\}/);
  });

  test('berth connect piped: plain numbered menus, answered by number (and name), no escape codes', async () => {
    // The menu answered with a number out of range, then by number; the tool by name; its argument; then Quit.
    const r = await berthCli(['connect', b.url], { stdin: '7\n1\necho\nhello plain\n3\n' });
    assert.deepEqual([r.code, r.stderr], [0, '']);
    assert.ok(!r.stdout.includes('\x1b'), `no escape codes:\n${JSON.stringify(r.stdout)}`);
    const menu = 'What next?\n  1) Call a tool\n  2) List again\n  3) Quit\n';
    assert.ok(
      r.stdout.includes(
        `${menu}Choose 1-3: 7\n! "7" is not one of the choices: answer 1-3 or a name as listed\nChoose 1-3: 1\nTool\n  1) echo\n`,
      ),
      r.stdout,
    );
    assert.match(r.stdout, /Choose 1-\d+: echo\ntext: hello plain\ncalling echo \{"text":"hello plain"\}\nhello plain\n/);
    assert.ok(r.stdout.endsWith(`hello plain\n${menu}Choose 1-3: 3\n`), r.stdout);
  });

  test('forwardSampling maps the request and the finish reason', async () => {
    const r = await forwardSampling(
      {
        messages: [{ role: 'user', content: { type: 'text', text: 'x' } }],
        maxTokens: 5,
        systemPrompt: 'be brief',
        temperature: 0.2,
        stopSequences: ['\n'],
      },
      { url: `${model.url}/chat/completions`, model: 'm2' },
    );
    assert.deepEqual(r, { role: 'assistant', content: { type: 'text', text: 'echo: x' }, model: 'fake-1', stopReason: 'maxTokens' });
    assert.deepEqual(model.seen.at(-1)!.body, {
      model: 'm2',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'x' },
      ],
      max_tokens: 5,
      temperature: 0.2,
      stop: ['\n'],
    });
    assert.equal(model.seen.at(-1)!.auth, undefined);
    const img = toChatRequest(
      { messages: [{ role: 'user', content: { type: 'image', data: 'AAAA', mimeType: 'image/png' } }], maxTokens: 1 },
      'm',
    );
    assert.deepEqual((img.messages as unknown[])[0], {
      role: 'user',
      content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }],
    });
    await assert.rejects(forwardSampling({ messages: [], maxTokens: 1 }, { url: `${model.url}/nope`, model: 'm' }), /HTTP 404/);
  });
});

describe('berth call with auth', () => {
  let b: BerthProcess;
  before(async () => {
    b = await runBerth(['--isolation', 'process', '--auth', 'api-key', '--api-key-env', 'BERTH_CLIENT_TEST_KEYS'], undefined, {
      BERTH_CLIENT_TEST_KEYS: 'k-one,k-two',
    });
  });
  after(() => b.stop());

  test('--token and --header reach an api-key runtime; none or a wrong key is refused', async () => {
    const args = ['call', b.url, 'echo', '--args', '{"text":"in"}'];
    assert.deepEqual(await berthCli([...args, '--token', 'k-one']).then((r) => [r.code, r.stdout]), [0, 'in\n']);
    assert.deepEqual(await berthCli([...args, '--header', 'X-API-Key: k-two']).then((r) => [r.code, r.stdout]), [0, 'in\n']);
    for (const extra of [[], ['--token', 'k-three']]) {
      const r = await berthCli([...args, ...extra]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /401|Unauthorized/i);
    }
  });
});

const HAS_TMUX = (() => {
  try {
    execFileSync('tmux', ['-V']);
    return true;
  } catch {
    return false;
  }
})();
const SOCKET = join(tmpdir(), `berth-client-test-${process.pid}.tmux`); // our own tmux server, never another's
const tmux = (...args: string[]) => execFileSync('tmux', ['-S', SOCKET, ...args], { encoding: 'utf8' });
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** `berth connect` in a real pseudo-terminal: keys in with send-keys, the screen out with capture-pane. */
class Pane {
  static n = 0;
  readonly name = `c${++Pane.n}`;
  /** `env` is added to the environment, from which NO_COLOR is taken out. */
  constructor(args: string[], env: Record<string, string> = {}) {
    const command = [
      'env',
      '-u',
      'NO_COLOR',
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      process.execPath,
      'bin/berth.js',
      'connect',
    ];
    const cmd = `${[...command, ...args].map(sh).join(' ')}; echo "EXIT=$?"; sleep 600`;
    tmux('new-session', '-d', '-s', this.name, '-x', '120', '-y', '50', '-c', ROOT, cmd);
  }
  screen(): string {
    return tmux('capture-pane', '-p', '-J', '-S', '-500', '-t', this.name);
  }
  async waitFor(re: RegExp, ms = 30_000): Promise<RegExpExecArray> {
    const end = Date.now() + ms;
    for (;;) {
      const s = this.screen();
      const m = re.exec(s);
      if (m) return m;
      if (Date.now() > end) throw new Error(`screen never showed ${re}:\n${s}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  keys(...k: string[]): void {
    tmux('send-keys', '-t', this.name, ...k);
  }
  type(text: string): void {
    tmux('send-keys', '-t', this.name, '-l', text);
  }
  close(): void {
    tmux('kill-session', '-t', this.name);
  }
}

describe('berth connect in a terminal (tmux)', { skip: !HAS_TMUX && 'tmux is not installed' }, () => {
  let b: BerthProcess;
  let model: Awaited<ReturnType<typeof fakeModel>>;
  before(async () => {
    // A session that outlives the tests: closing the last one would end the server while the next one starts.
    tmux('new-session', '-d', '-s', 'keep', 'sleep 3600');
    b = await runBerth(['--isolation', 'process']);
    model = await fakeModel();
  });
  after(async () => {
    try {
      tmux('kill-server');
    } catch {
      /* no session left */
    }
    rmSync(SOCKET, { force: true });
    await b.stop();
    model.server.close();
  });
  const ask = () => new Pane([b.url, '--call', 'ask', '--args', '{"question":"Your name?"}']);

  test('an elicitation form: empty required input refused with a message, then filled and accepted', async () => {
    const p = ask();
    await p.waitFor(/The server asks: Your name\?[\s\S]*Answer\?[\s\S]*Accept/);
    p.keys('Enter');
    await p.waitFor(/\? answer/);
    p.keys('Enter');
    await p.waitFor(/answer is required/);
    p.type('Ada');
    p.keys('Enter');
    await p.waitFor(/^\{"action":"accept","content":\{"answer":"Ada"\}\}$/m);
    await p.waitFor(/EXIT=0/);
    p.close();
  });

  test('an elicitation declined, one cancelled, and one left with Ctrl-C', async () => {
    for (const [downs, action] of [
      [1, 'decline'],
      [2, 'cancel'],
    ] as const) {
      const p = ask();
      await p.waitFor(/Answer\?[\s\S]*Cancel/);
      for (let i = 0; i < downs; i++) p.keys('Down');
      p.keys('Enter');
      await p.waitFor(new RegExp(`^\\{"action":"${action}"\\}$`, 'm'));
      await p.waitFor(/EXIT=0/);
      p.close();
    }
    const p = ask(); // Ctrl-C halfway through the form cancels
    await p.waitFor(/Answer\?[\s\S]*Cancel/);
    p.keys('Enter');
    await p.waitFor(/\? answer/);
    p.keys('C-c');
    await p.waitFor(/^\{"action":"cancel"\}$/m);
    p.close();
  });

  test('a progress bar appears, moves and completes', async () => {
    const p = new Pane([b.url, '--call', 'progress', '--args', '{"steps":8,"delayMs":250}']);
    const partial = await p.waitFor(/[░█]+ \d+% \| ([1-7])\/8 step \1/);
    assert.ok(Number(partial[1]) < 8);
    await p.waitFor(/█{40} 100% \| 8\/8 step 8\s*\ndone 8/);
    await p.waitFor(/EXIT=0/);
    p.close();
  });

  test('a sampling request shown, approved and answered with a typed reply', async () => {
    const p = new Pane([b.url, '--call', 'sample', '--args', '{"prompt":"Say hi"}']);
    await p.waitFor(/The server asks for a model's reply:\nuser: Say hi\n\(max 50 tokens\)[\s\S]*Answer\?[\s\S]*Decline/);
    p.keys('Enter');
    await p.waitFor(/\? Reply/);
    p.type('Hello from the terminal');
    p.keys('Enter');
    await p.waitFor(/^\{"type":"text","text":"Hello from the terminal"\}$/m);
    p.close();
  });

  test('a sampling request forwarded to the model once approved', async () => {
    const before = model.seen.length;
    const p = new Pane([
      b.url,
      '--call',
      'sample',
      '--args',
      '{"prompt":"Say hi"}',
      '--sampling-endpoint',
      model.url,
      '--sampling-model',
      'm-pty',
    ]);
    await p.waitFor(/Send to m-pty\?/);
    assert.equal(model.seen.length, before, 'nothing is sent before the person approves');
    p.keys('Enter');
    await p.waitFor(/m-pty replied: echo: Say hi[\s\S]*^\{"type":"text","text":"echo: Say hi"\}$/m);
    assert.equal(model.seen.length, before + 1);
    p.close();
  });

  test('--auto-approve-sampling forwards without asking', async () => {
    const p = new Pane([
      b.url,
      '--call',
      'sample',
      '--args',
      '{"prompt":"unattended"}',
      '--sampling-endpoint',
      model.url,
      '--sampling-model',
      'm-auto',
      '--auto-approve-sampling',
    ]);
    const screen = await p.waitFor(/EXIT=0/);
    assert.doesNotMatch(screen.input, /Send to m-auto\?/);
    assert.match(screen.input, /sampled from m-auto\n\{"type":"text","text":"echo: unattended"\}/);
    p.close();
  });

  test("a tool argument's default is pre-filled: kept, it is sent; deleted, it is not", async () => {
    for (const [keys, sent] of [
      [[], '{"steps":2,"delayMs":5}'],
      [['BSpace'], '{"steps":2}'],
    ] as const) {
      const p = new Pane([b.url, '--call', 'progress', '--arg', 'steps=2']);
      await p.waitFor(/\? delayMs \(integer, optional\) 5$/m);
      if (keys.length) p.keys(...keys);
      p.keys('Enter');
      const screen = await p.waitFor(/EXIT=0/);
      assert.match(screen.input, new RegExp(`calling progress ${sent.replace(/[{}]/g, '\\$&')}\n[\\s\\S]*done 2`));
      assert.doesNotMatch(screen.input, /Tools \(/, '--call goes straight to the call');
      p.close();
    }
  });

  test('the menu: pick a tool by typing, its argument asked from the schema, then quit', async () => {
    const p = new Pane([b.url]);
    await p.waitFor(/Tools \(\d+\):[\s\S]*What next\?/);
    p.keys('Enter');
    await p.waitFor(/\? Tool/);
    p.type('echo');
    await p.waitFor(/❯ echo/);
    p.keys('Enter');
    await p.waitFor(/\? text/);
    p.type('hello pty');
    p.keys('Enter');
    await p.waitFor(/calling echo \{"text":"hello pty"\}\nhello pty\n[\s\S]*What next\?/);
    p.keys('Down', 'Down', 'Enter'); // Call a tool, List again, Quit
    await p.waitFor(/EXIT=0/);
    p.close();
  });

  test('NO_COLOR: the menu as a numbered list on the terminal too, answers not echoed twice', async () => {
    const p = new Pane([b.url], { NO_COLOR: '1' });
    await p.waitFor(/What next\?\n {2}1\) Call a tool\n {2}2\) List again\n {2}3\) Quit\nChoose 1-3: $/m);
    p.type('1');
    p.keys('Enter');
    await p.waitFor(/^Choose 1-\d+: $/m);
    p.type('echo');
    p.keys('Enter');
    await p.waitFor(/^text: $/m);
    p.type('hello dumb');
    p.keys('Enter');
    await p.waitFor(/calling echo \{"text":"hello dumb"\}\nhello dumb\n[\s\S]*Choose 1-3: $/m);
    p.type('Quit');
    p.keys('Enter');
    const screen = await p.waitFor(/EXIT=0/);
    assert.match(screen.input, /^Choose 1-3: 1\nTool\n/m);
    assert.match(screen.input, /^Choose 1-3: Quit\nEXIT=0/m);
    p.close();
  });
});
