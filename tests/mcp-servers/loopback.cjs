// Preloaded with `node --require`: a server that listens on a port without naming a host binds 127.0.0.1
// only. The everything server's HTTP modes would otherwise listen on every interface.
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
