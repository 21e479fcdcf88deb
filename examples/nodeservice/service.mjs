// A funcmesh service written in JavaScript with the official NATS client
// (@nats-io/transport-node) and its services API (@nats-io/services).
//
// It follows funcmesh's wire contract v1 (see the Go package transport):
//   - one NATS micro service named after the funcmesh service ("nodegreeter"),
//   - one endpoint per function on fn.<service>.<function>, queue group "q",
//   - params arrive as the message body (JSON), the result is the reply body,
//   - errors are replies with Nats-Service-Error / Nats-Service-Error-Code,
//   - Mesh-Auth (claims JSON), Mesh-Request-Id, Mesh-Caller and
//     Mesh-Deadline (Unix ms) headers describe the call;
//   - a nested call (relay, below) is a request on the call route
//     call.<this service>.<service>.<function>, with the Mesh-Auth,
//     Mesh-Auth-Sig, Mesh-Request-Id, Mesh-Deadline and Mesh-Hops headers
//     of the call being served passed on unchanged, Mesh-Caller naming
//     the calling function, and the reply inbox under _INBOX_<service>;
//     the host's router asks the policy and relays the answer.
//
// Run:   npm ci && NATS_URL=nats://127.0.0.1:4222 node service.mjs
// With per-service credentials (examples/existingapp prints them):
//        NATS_USER=... NATS_PASSWORD=... NATS_INBOX_PREFIX=... as well;
//        MESH_SERVICE names the service (default nodegreeter).
// Then:  curl -X POST localhost:8080/fn/nodegreeter/hello -d '{"name":"Ada"}'
import { connect, headers } from "@nats-io/transport-node";
import { Svcm } from "@nats-io/services";

const service = process.env.MESH_SERVICE || "nodegreeter";
const prefix = process.env.MESH_PREFIX || "fn";
const callPrefix = process.env.MESH_CALL_PREFIX || "call";
const servers = process.env.NATS_URL || "nats://127.0.0.1:4222";

const opts = { servers: servers.split(","), name: `${service}-js` };
if (process.env.NATS_USER) {
  opts.user = process.env.NATS_USER;
  opts.pass = process.env.NATS_PASSWORD || "";
}
// A funcmesh broker with per-service credentials lets a service receive
// replies only under its own inbox prefix, and the router answers nested
// calls only there: _INBOX_<service>.
opts.inboxPrefix = process.env.NATS_INBOX_PREFIX || `_INBOX_${service}`;
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
    msg,
    claims,
    requestId: get("Mesh-Request-Id"),
    caller: get("Mesh-Caller") || null,
    deadline,
    expired: deadline > 0 && Date.now() > deadline,
    params: msg.data.length ? JSON.parse(td.decode(msg.data)) : {},
  };
}

// The headers a nested call passes on unchanged from the call being
// served: the router checks the claims against their signature, the
// request ID and the deadline they were signed for.
const passOn = ["Mesh-Auth", "Mesh-Auth-Sig", "Mesh-Request-Id", "Mesh-Deadline", "Mesh-Hops", "traceparent", "tracestate"];

// callFunction makes a nested call from the function fnName serving c, and
// returns the result or throws {status, message} as the callee (or the
// policy) answered.
async function callFunction(c, fnName, svc, fn, params) {
  const h = headers();
  for (const k of passOn) {
    if (c.msg.headers && c.msg.headers.has(k)) h.set(k, c.msg.headers.get(k));
  }
  h.set("Mesh-Caller", `${service}.${fnName}`);
  const timeout = Math.max(1, (c.deadline || Date.now() + 10000) - Date.now());
  let r;
  try {
    r = await nc.request(`${callPrefix}.${service}.${svc}.${fn}`, te.encode(JSON.stringify(params ?? null)), { headers: h, timeout });
  } catch (e) {
    const err = new Error(String(e?.message).includes("timeout") ? "deadline exceeded" : "no router takes nested calls");
    err.status = String(e?.message).includes("timeout") ? 504 : 503;
    throw err;
  }
  if (r.headers && r.headers.has("Nats-Service-Error-Code")) {
    const err = new Error(r.headers.get("Nats-Service-Error") || "nested call failed");
    err.status = Number(r.headers.get("Nats-Service-Error-Code")) || 502;
    throw err;
  }
  return r.data.length ? JSON.parse(td.decode(r.data)) : null;
}

// endpoint registers a function; fn returns the result object or throws
// {status, message} for an error reply.
function endpoint(name, fn) {
  svc.addGroup(`${prefix}.${service}`).addEndpoint(name, {
    handler: async (err, msg) => {
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
        const out = await fn(c);
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
// relay calls {service, function, params} (a Go function, say) and returns
// its result: a nested call, which the host's policy decides.
endpoint("relay", async (c) => ({ result: await callFunction(c, "relay", c.params.service, c.params.function, c.params.params) }));
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
