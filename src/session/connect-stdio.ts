// A server that speaks MCP on stdio: berth writes to its stdin and reads its stdout, one JSON-RPC message a line,
// through the stdio relay. A line over limits.maxMessageSize stops the server (it would otherwise grow berth's
// buffer without bound); a non-JSON line is logged, rate-limited with the server's other noise.
import { methodLabel } from '../observe/metrics.js';
import { StdioChannel } from '../relay/stdio-channel.js';
import { MessageRelay } from '../relay/message-relay.js';
import { RelayUpstream } from '../relay/relay-upstream.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { dropCounter, pacedReport, relayLog, relayOptions, type Connecting, type Connector } from './connector.js';
import { withinStartup } from './within-startup.js';

export const stdioConnector: Connector = {
  port: async () => undefined,
  headersWithin: () => 0,
  connect({ config, runtimeName, sandbox, log, noise, metrics, retention }: Connecting) {
    const { maxMessageSize, inputBacklog, outputTime, outputTimeBurst } = config.limits;
    const channel = new StdioChannel(sandbox.stdin, sandbox.stdout, {
      maxLineBytes: maxMessageSize,
      maxBacklog: inputBacklog,
      outputTime,
      outputTimeBurst,
    });
    const relay = new MessageRelay(channel, relayOptions(config, retention));
    channel.on('overflow', (bytes) => {
      log.error({ bytes, limit: config.limits.maxMessageSize }, 'the server sent a message over maxMessageSize; stopping it');
      // Its pending calls hear why now, not the "killed by SIGKILL" of the stop below.
      relay.close(ErrorCode.ServerError, `Server error: ${channel.overflowed}`);
      void sandbox.stop(0);
    });
    channel.on(
      'invalid',
      (line, reason, bytes) =>
        noise.admit('stdout', bytes, 200) &&
        log.warn({ stream: 'stdout', reason }, `ignored a non-JSON-RPC line from the server: ${line.slice(0, 200)}`),
    );
    channel.on('paced', pacedReport(config, runtimeName, log, metrics));
    relay.on('log', relayLog(log));
    if (metrics) {
      channel.onBytes = (direction, n) => metrics.bytes.inc({ runtime: runtimeName, direction }, n);
      relay.on('dropped', dropCounter(metrics, runtimeName));
      relay.on('answered', (method, ms) =>
        metrics.serverRequestSeconds.observe({ runtime: runtimeName, method: methodLabel(method) }, ms / 1000),
      );
    }
    const ping = config.readyProbe === 'ping' ? relay.call('ping').then(() => undefined) : Promise.resolve();
    const warm = withinStartup(sandbox, config.limits.startupTimeout, ping, 'the server did not answer a ping');
    return { upstream: new RelayUpstream(relay, channel), warm };
  },
};
