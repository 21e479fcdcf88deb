// A funcmesh service written in JavaScript with the official NATS client
// (@nats-io/transport-node) and its services API (@nats-io/services).
//
// It follows funcmesh's wire contract v1 (see the Go package transport):
//   - one NATS micro service named after the funcmesh service ("nodegreeter"),
//   - one endpoint per function on fn.<service>.<function>, queue group "q",
//   - params arrive as the message body (JSON), the result is the reply body,
//   - errors are replies with Nats-Service-Error / Nats-Service-Error-Code,
//   - Mesh-Auth (claims JSON), Mesh-Request-Id, Mesh-Caller and
//     Mesh-Deadline (Unix ms) headers describe the call.
//
// Run:   npm ci && NATS_URL=nats://127.0.0.1:4222 node service.mjs
// With per-service credentials (examples/existingapp prints them):
//        NATS_USER=... NATS_PASSWORD=... NATS_INBOX_PREFIX=... as well;
//        MESH_SERVICE names the service (default nodegreeter).
// Then:  curl -X POST localhost:8080/fn/nodegreeter/hello -d '{"name":"Ada"}'
import { connect } from "@nats-io/transport-node";
import { Svcm } from "@nats-io/services";

const service = process.env.MESH_SERVICE || "nodegreeter";
const prefix = process.env.MESH_PREFIX || "fn";
const servers = process.env.NATS_URL || "nats://127.0.0.1:4222";

const opts = { servers: servers.split(","), name: `${service}-js` };
if (process.env.NATS_USER) {
  opts.user = process.env.NATS_USER;
  opts.pass = process.env.NATS_PASSWORD || "";
}
if (process.env.NATS_INBOX_PREFIX) {
  // A funcmesh broker with per-service credentials lets a service receive
  // replies only under its own inbox prefix (_INBOX_<service>). This service
  // makes no requests, so it works without; one that calls functions needs it.
  opts.inboxPrefix = process.env.NATS_INBOX_PREFIX;
}
if (process.env.NATS_TOKEN) {
  opts.token = process.env.NATS_TOKEN;
}

const nc = await connect(opts);
const svc = await new Svcm(nc).add({
  name: service,
  version: "1.0.0",
  description: "funcmesh example service in JavaScript",
  queue: "q",
});

const te = new TextEncoder();
const td = new TextDecoder();

// call decodes the parts of the wire contract a function needs.
function call(msg) {
  const h = msg.headers;
  const get = (k) => (h && h.has(k) ? h.get(k) : "");
  let claims = null;
  const auth = get("Mesh-Auth");
  if (auth) claims = JSON.parse(auth);
  const deadline = Number(get("Mesh-Deadline") || 0);
  return {
    claims,
    requestId: get("Mesh-Request-Id"),
    caller: get("Mesh-Caller") || null,
    expired: deadline > 0 && Date.now() > deadline,
    params: msg.data.length ? JSON.parse(td.decode(msg.data)) : {},
  };
}

// endpoint registers a function; fn returns the result object or throws
// {status, message} for an error reply.
function endpoint(name, fn) {
  svc.addGroup(`${prefix}.${service}`).addEndpoint(name, {
    handler: (err, msg) => {
      if (err) return;
      let c;
      try {
        c = call(msg);
      } catch {
        msg.respondError(400, "params must be a JSON object");
        return;
      }
      if (c.expired) return; // the caller has given up; do no work
      try {
        const out = fn(c);
        msg.respond(te.encode(JSON.stringify(out)));
      } catch (e) {
        const status = Number.isInteger(e?.status) && e.status >= 400 && e.status <= 599 ? e.status : 500;
        msg.respondError(status, status === 500 ? "internal error" : String(e.message));
      }
    },
  });
}

endpoint("hello", (c) => ({ greeting: `Hello, ${c.params.name || "world"}!`, from: "javascript" }));
endpoint("whoami", (c) => ({ claims: c.claims, requestId: c.requestId, caller: c.caller }));
endpoint("fail", () => {
  const e = new Error("this function always fails with 409");
  e.status = 409;
  throw e;
});

// The server has every subscription once a flush returns: calls reach us.
await nc.flush();
console.log(`ready: service ${service} on ${prefix}.${service}.> via ${servers}`);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  await svc.stop();
  await nc.drain();
  process.exit(0);
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
