// `berth connect URL`: an interactive session. Lists what the server offers, calls tools, and puts every
// question the server asks (elicitation, sampling) to the person at the terminal.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { toolArgs } from './args.js';
import { endpointOf, headersOf, type ConnectionOptions, type Io } from './call.js';
import { fieldsOf } from './form.js';
import { describeError, McpSession, resultText } from './session.js';
import { isPromptExit, Terminal } from './terminal.js';

export interface ConnectOptions extends ConnectionOptions {
  autoApproveSampling?: boolean;
  /** Call this tool at once, then exit. */
  call?: string;
  args?: string;
  arg: string[];
}

/** The first line of a description, shortened: a list should fit the screen. */
const brief = (d?: string) => {
  const line = (d ?? '').split('\n')[0]!;
  return line ? ` — ${line.length > 100 ? `${line.slice(0, 99)}…` : line}` : '';
};

async function listAll(s: McpSession, term: Terminal): Promise<Tool[]> {
  const caps = s.client.getServerCapabilities() ?? {};
  const tools = caps.tools ? (await s.client.listTools()).tools : [];
  term.print(`Tools (${tools.length}):`);
  for (const t of tools) term.print(`  ${t.name}${brief(t.description)}`);
  if (caps.prompts) {
    const { prompts } = await s.client.listPrompts();
    term.print(`Prompts (${prompts.length}):`);
    for (const p of prompts) term.print(`  ${p.name}${brief(p.description)}`);
  }
  if (caps.resources) {
    const { resources } = await s.client.listResources();
    term.print(`Resources (${resources.length}):`);
    for (const r of resources) term.print(`  ${r.uri}${r.name ? ` (${r.name})` : ''}`);
  }
  return tools;
}

async function callTool(s: McpSession, term: Terminal, tool: Tool, args: Record<string, unknown>): Promise<boolean> {
  // Asks only what the flags left out.
  const missing = fieldsOf(tool.inputSchema).filter((f) => !(f.name in args));
  if (missing.length) Object.assign(args, await term.askFields(missing));
  term.print(`calling ${tool.name} ${JSON.stringify(args)}`);
  try {
    const r = await s.callTool(tool.name, args, (p) => term.progress(p));
    term.endProgress();
    term.print(r.isError ? `error: ${resultText(r)}` : resultText(r));
    return !r.isError;
  } catch (e) {
    term.endProgress();
    term.print(`error: ${describeError(e, s.url)}`);
    return false;
  }
}

async function getPrompt(s: McpSession, term: Terminal): Promise<void> {
  const { prompts } = await s.client.listPrompts();
  const p = await term.choose(
    'Prompt',
    prompts.map((x) => ({ name: x.name, value: x })),
  );
  const schema = {
    properties: Object.fromEntries((p.arguments ?? []).map((a) => [a.name, { type: 'string', description: a.description }])),
    required: (p.arguments ?? []).filter((a) => a.required).map((a) => a.name),
  };
  const args = (await term.askFields(fieldsOf(schema))) as Record<string, string>;
  const r = await s.client.getPrompt({ name: p.name, arguments: args });
  for (const m of r.messages) term.print(`${m.role}: ${m.content.type === 'text' ? m.content.text : `[${m.content.type}]`}`);
}

async function readResource(s: McpSession, term: Terminal): Promise<void> {
  const { resources } = await s.client.listResources();
  const uri = await term.choose(
    'Resource',
    resources.map((r) => ({ name: r.uri, value: r.uri })),
  );
  const r = await s.client.readResource({ uri });
  for (const c of r.contents) term.print('text' in c ? String(c.text) : `[${c.mimeType ?? 'binary'} ${c.uri}]`);
}

/** Resolves to the exit code. */
export async function runConnect(url: string, o: ConnectOptions, io: Io): Promise<number> {
  const term = new Terminal(io.stdin, io.stdout);
  const endpoint = endpointOf(o);
  let s: McpSession;
  try {
    s = await McpSession.open(url, {
      headers: headersOf(o),
      token: o.token,
      roots: o.root,
      onElicit: (p) => term.elicit(p),
      onSample: (p) => term.sample(p, endpoint, !!o.autoApproveSampling),
      onLog: (n) => term.log(n),
    });
  } catch (e) {
    io.stderr.write(`berth connect: ${describeError(e, url)}\n`);
    return 2;
  }
  const info = s.client.getServerVersion();
  term.print(`Connected to ${info?.name ?? 'server'} ${info?.version ?? ''} at ${url}`);
  try {
    if (o.call) {
      // Straight to the call: the catalogue is not printed, only the tool's schema is needed.
      const { tools: all } = await s.client.listTools();
      const tool = all.find((t) => t.name === o.call);
      if (!tool) throw new Error(`no tool "${o.call}" on the server (tools: ${all.map((t) => t.name).join(', ') || 'none'})`);
      return (await callTool(s, term, tool, await toolArgs(o.args, o.arg, tool.inputSchema, io.stdin))) ? 0 : 1;
    }
    if (s.client.getInstructions()) term.print(s.client.getInstructions()!);
    let tools = await listAll(s, term);
    const caps = s.client.getServerCapabilities() ?? {};
    for (;;) {
      const choices: Array<{ name: string; value: string }> = [];
      if (tools.length) choices.push({ name: 'Call a tool', value: 'tool' });
      if (caps.prompts) choices.push({ name: 'Get a prompt', value: 'prompt' });
      if (caps.resources) choices.push({ name: 'Read a resource', value: 'resource' });
      choices.push({ name: 'List again', value: 'list' }, { name: 'Quit', value: 'quit' });
      const what = await term.menu('What next?', choices).catch((e: unknown) => {
        if (term.inputClosed) return 'closed' as const;
        throw e;
      });
      if (what === 'closed') {
        io.stderr.write('berth connect: stdin closed; quitting\n');
        return 0;
      }
      if (what === 'quit') return 0;
      try {
        if (what === 'list') tools = await listAll(s, term);
        else if (what === 'prompt') await getPrompt(s, term);
        else if (what === 'resource') await readResource(s, term);
        else {
          const tool = await term.choose(
            'Tool',
            tools.map((t) => ({ name: t.name, value: t, description: t.description })),
          );
          await callTool(s, term, tool, {});
        }
      } catch (e) {
        if (isPromptExit(e) && !term.inputClosed) continue; // Ctrl-C in a sub-menu goes back to the menu
        if (term.inputClosed) throw e;
        term.print(`error: ${describeError(e, url)}`);
      }
    }
  } catch (e) {
    if (term.inputClosed) {
      io.stderr.write('berth connect: stdin closed before every question was answered; ending the session\n');
      return 1;
    }
    if (isPromptExit(e)) return 0;
    io.stderr.write(`berth connect: ${describeError(e, url)}\n`);
    return 1;
  } finally {
    await s.close();
  }
}
