// `berth call URL TOOL`: one tool call for scripts. The server's questions are answered from flags.
import type { ElicitRequestFormParams, ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { toolArgs } from './args.js';
import { fieldsOf, validateContent } from './form.js';
import { forwardSampling, typedReply, type ChatEndpoint } from './sampling.js';
import { describeError, McpSession, parseHeader, resultText } from './session.js';
import { Terminal } from './terminal.js';

export interface ConnectionOptions {
  header: string[];
  token?: string;
  root: string[];
  samplingEndpoint?: string;
  samplingModel?: string;
  samplingKeyEnv: string;
}

export interface CallOptions extends ConnectionOptions {
  args?: string;
  arg: string[];
  json?: boolean;
  answerElicitation?: string;
  answerSampling?: string;
}

export interface Io {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export function headersOf(o: ConnectionOptions): Record<string, string> {
  return Object.fromEntries(o.header.map(parseHeader));
}

export function endpointOf(o: ConnectionOptions): ChatEndpoint | undefined {
  if (!o.samplingEndpoint) return undefined;
  if (!o.samplingModel) throw new Error('--sampling-endpoint needs --sampling-model');
  return { url: o.samplingEndpoint, model: o.samplingModel, apiKey: process.env[o.samplingKeyEnv] };
}

/** --answer-elicitation: `decline`, `cancel`, or the JSON content to accept with (checked against the form). */
export function elicitationAnswerer(answer: string, report: (msg: string) => void): (p: ElicitRequestFormParams) => Promise<ElicitResult> {
  if (answer === 'decline' || answer === 'cancel') return async () => ({ action: answer });
  let content: unknown;
  try {
    content = JSON.parse(answer);
  } catch {
    throw new Error('--answer-elicitation expects decline, cancel or a JSON object');
  }
  if (!content || typeof content !== 'object' || Array.isArray(content))
    throw new Error('--answer-elicitation expects decline, cancel or a JSON object');
  return async (p) => {
    const r = validateContent(fieldsOf(p.requestedSchema), content as Record<string, unknown>);
    if (r.ok) return { action: 'accept', content: r.content as ElicitResult['content'] };
    report(`--answer-elicitation does not fit the form "${p.message}": ${r.errors.join('; ')}; cancelled`);
    return { action: 'cancel' };
  };
}

/** Resolves to the exit code: 0 done, 1 the call failed (or isError, or an answer did not fit), 2 could not call. */
export async function runCall(url: string, tool: string, o: CallOptions, io: Io): Promise<number> {
  const term = new Terminal(io.stdin, io.stderr); // progress and logs go to stderr
  let answerFailed = false;
  const report = (m: string) => {
    answerFailed = true;
    io.stderr.write(`berth call: ${m}\n`);
  };
  let session: McpSession;
  try {
    const endpoint = endpointOf(o);
    session = await McpSession.open(url, {
      headers: headersOf(o),
      token: o.token,
      roots: o.root,
      onElicit: o.answerElicitation !== undefined ? elicitationAnswerer(o.answerElicitation, report) : undefined,
      onSample:
        o.answerSampling !== undefined
          ? async () => typedReply(o.answerSampling!, 'berth-call')
          : endpoint
            ? (p) => forwardSampling(p, endpoint)
            : undefined,
      onLog: (n) => term.log(n),
    });
  } catch (e) {
    io.stderr.write(`berth call: ${describeError(e, url)}\n`);
    return 2;
  }
  try {
    let schema: unknown;
    if (o.arg.length) {
      // --arg values are typed (and their names checked) by the tool's schema.
      const { tools } = await session.client.listTools();
      const t = tools.find((x) => x.name === tool);
      if (!t) throw new Error(`no tool "${tool}" on the server (tools: ${tools.map((x) => x.name).join(', ') || 'none'})`);
      schema = t.inputSchema;
    }
    const args = await toolArgs(o.args, o.arg, schema, io.stdin);
    const r = await session.callTool(tool, args, (p) => term.progress(p));
    term.endProgress();
    io.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : `${resultText(r)}\n`);
    if (r.isError) io.stderr.write(`berth call: ${tool} reported an error\n`);
    return r.isError || answerFailed ? 1 : 0;
  } catch (e) {
    term.endProgress();
    io.stderr.write(`berth call: ${describeError(e, url)}\n`);
    return 1;
  } finally {
    await session.close();
  }
}
