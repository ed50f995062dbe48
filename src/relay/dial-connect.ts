// undici's connector contract over a sandbox's Dial: a pool or agent then reaches a server inside its own network
// over sockets made there (sandbox/dial.ts).
import type { buildConnector } from 'undici';
import type { Dial } from '../sandbox/dial.js';

export function undiciConnect(dial: Dial): buildConnector.connector {
  return (_options, callback) => {
    dial().then(
      (socket) => {
        socket.setNoDelay(true); // as undici's own connector does: an answer's last bytes must not wait for an ACK
        callback(null, socket);
      },
      (e: Error) => callback(e, null),
    );
  };
}
