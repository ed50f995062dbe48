// A server that serves Streamable HTTP itself on $PORT at /mcp (the AgentCore container contract). Inside a
// network of its own it is reached through the sandbox's Unix socket, never a host port; on the host network,
// through a loopback port berth picked for it. It is warm once it answers any HTTP request on /mcp. Its session is
// bounded as a stdio server's is: the bodies of requests under way (limits.inputBacklog) and the share of berth's
// main thread its answers take (limits.outputTime).
import { HttpUpstream } from '../relay/http-upstream.js';
import { freePort } from '../util/free-port.js';
import { withinStartup } from './within-startup.js';
import { dropCounter, pacedReport, relayLog, relayOptions, type Connecting, type Connector } from './connector.js';

/** A server told to listen on a loopback port berth picks for each session. */
export const httpConnector: Connector = httpConnectorAt();

/**
 * Listening on `fixedPort` (an image's, inside a network of its own: no two sessions share a network), or on a port
 * berth picks.
 */
export function httpConnectorAt(fixedPort?: number): Connector {
  return {
    port: fixedPort === undefined ? freePort : async () => fixedPort,
    // The server's own headers: a JSON answer's come when the call ends, as late as its requestTimeout.
    headersWithin: (config) => config.limits.requestTimeout,
    connect({ config, runtimeName, sandbox, port, retention, log, metrics }: Connecting) {
      const { maxMessageSize, inputBacklog, outputTime, outputTimeBurst } = config.limits;
      const upstream = new HttpUpstream(
        sandbox.dialHttp ?? port!,
        relayOptions(config, retention),
        config.forwardHeaders,
        maxMessageSize,
        relayLog(log),
        metrics && dropCounter(metrics, runtimeName),
        { inputBacklog, outputTime, outputTimeBurst },
      );
      upstream.outputPacer.on('paced', pacedReport(config, runtimeName, log, metrics));
      // Bounded as every start-up step is: whatever the server does, a start gives its slot back by startupTimeout.
      const { startupTimeout } = config.limits;
      const ready = upstream.waitReady(startupTimeout, sandbox.exited);
      return { upstream, warm: withinStartup(sandbox, startupTimeout, ready, 'the server did not answer on $PORT') };
    },
  };
}
