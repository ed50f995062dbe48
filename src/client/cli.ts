// `berth connect` and `berth call`: the client commands (loaded lazily, so `berth run` does not load prompts).
import { Command, Option } from 'commander';

const many = (v: string, acc: string[]) => [...acc, v];

function connectionOptions(c: Command): Command {
  return c
    .option('--header <header>', "extra request header 'Name: value' (repeatable)", many, [] as string[])
    .option('--token <token>', 'sent as Authorization: Bearer TOKEN')
    .option('--root <dir>', 'serve this directory as a root (repeatable)', many, [] as string[])
    .addOption(
      new Option(
        '--sampling-endpoint <url>',
        'answer sampling from an OpenAI-compatible chat-completions endpoint (base URL or …/chat/completions)',
      ).env('BERTH_SAMPLING_ENDPOINT'),
    )
    .addOption(new Option('--sampling-model <model>', 'model name for --sampling-endpoint').env('BERTH_SAMPLING_MODEL'))
    .option('--sampling-key-env <var>', 'environment variable holding the endpoint API key', 'OPENAI_API_KEY')
    .option('--args <json>', "tool arguments as a JSON object ('-' reads stdin)")
    .option('--arg <name=value>', 'one tool argument, typed by the tool schema (repeatable)', many, [] as string[]);
}

const io = () => ({ stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });

export function registerClientCommands(program: Command): void {
  connectionOptions(
    program
      .command('connect')
      .description('Interactive MCP client: list tools, prompts and resources, call tools, answer elicitation and sampling in the terminal')
      .argument('<url>', 'the MCP endpoint, e.g. http://127.0.0.1:8787/mcp'),
  )
    .option('--call <tool>', 'call this tool (arguments from --args/--arg, the rest asked), then exit')
    .option('--auto-approve-sampling', 'forward sampling to --sampling-endpoint without asking each time')
    .action(async (url: string, o) => {
      const { runConnect } = await import('./connect.js');
      process.exitCode = await runConnect(url, o, io());
      process.exit();
    });

  connectionOptions(
    program
      .command('call')
      .description('Call one tool and print its result (for scripts): exit 1 on an error or isError result, 2 when it could not connect')
      .argument('<url>', 'the MCP endpoint')
      .argument('<tool>', 'tool name'),
  )
    .option('--json', 'print the whole result as JSON (else its text content)')
    .option('--answer-elicitation <answer>', 'answer every elicitation: a JSON object to accept with, or decline, or cancel')
    .option('--answer-sampling <text>', 'answer every sampling request with this text')
    .action(async (url: string, tool: string, o) => {
      const { runCall } = await import('./call.js');
      process.exitCode = await runCall(url, tool, o, io());
      process.exit();
    });
}
