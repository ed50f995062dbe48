// Preloaded into a peer gateway that has no host option (supergateway 4.0.0 calls app.listen(port), which binds every
// interface): a listen() given a port and no host binds 127.0.0.1, so nothing the bench starts is reachable from
// the network. bench/targets.ts checks the listening socket afterwards.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  return listen.apply(this, args);
};
