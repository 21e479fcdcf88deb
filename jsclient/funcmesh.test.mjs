// Node tests of funcmesh.js's logic against a real HTTP server on a random
// loopback port that answers as the gateway does (and as a broken proxy
// might). Run with: node --test jsclient/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createClient, call, MeshError, codeForStatus } from "./funcmesh.js";

let server;
let baseURL;
const seen = []; // the requests the server got: {method, url, headers, body}

// The routes, by URL path.
const routes = {
  "/fn/greeter/hello": (req, body, res) => {
    const { name } = JSON.parse(body || "{}");
    json(res, 200, { greeting: `Hello, ${name}!` }, "rid-ok");
  },
  "/fn/greeter/empty": (req, body, res) => {
    res.writeHead(200, { "Content-Type": "application/json", "X-Request-Id": "rid-empty" });
    res.end();
  },
  "/fn/greeter/text": (req, body, res) => {
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    res.end("plain words");
  },
  "/fn/greeter/badjson": (req, body, res) => {
    res.writeHead(200, { "Content-Type": "application/json", "X-Request-Id": "rid-bad" });
    res.end("{not json");
  },
  "/fn/accounts/me": (req, body, res) => {
    if (req.headers.authorization !== "Bearer good-token") {
      return json(res, 401, { error: { code: "unauthenticated", message: "sign in first", request_id: "rid-401" } }, "rid-401");
    }
    json(res, 200, { user: "ada" });
  },
  "/fn/accounts/profile": (req, body, res) =>
    // No request_id in the body: the client takes the header's.
    json(res, 403, { error: { code: "permission_denied", message: "you may read only your own profile" } }, "rid-403"),
  "/fn/billing/invoices": (req, body, res) => {
    res.writeHead(502, { "Content-Type": "text/html", "X-Request-Id": "rid-proxy" });
    res.end("<html><body>Bad Gateway</body></html>");
  },
  "/fn/slow/hang": () => {}, // never answers
};

// Async calls and events, as the tasks and events handlers answer them:
// 202 with the task's ID and status location; the status as JSON.
const tasks = new Map(); // id -> {reads, states: [status JSON, ...]}
let nextTask = 0;
function enqueue(req, body, res, states) {
  if (req.headers.prefer !== "respond-async") return json(res, 400, { error: { code: "invalid_argument", message: "want Prefer" } });
  const id = "t" + ++nextTask;
  tasks.set(id, { reads: 0, states, key: req.headers["idempotency-key"] });
  res.writeHead(202, { "Content-Type": "application/json", Location: "/tasks/" + id, "Preference-Applied": "respond-async", "X-Request-Id": "rid-" + id });
  res.end(JSON.stringify({ id, status: "/tasks/" + id }));
}
const pending = { id: "", state: "pending", attempts: 0 };
Object.assign(routes, {
  "/fn/jobs/ok": (req, body, res) => enqueue(req, body, res, [pending, { state: "running" }, { state: "succeeded", result: { echoed: JSON.parse(body) } }]),
  "/fn/jobs/fails": (req, body, res) => enqueue(req, body, res, [{ state: "failed", attempts: 3, error: { code: "unprocessable", status: 422, message: "no such order" } }]),
  "/fn/jobs/bytes": (req, body, res) => enqueue(req, body, res, [{ state: "succeeded", result_base64: Buffer.from("raw\u0000bytes").toString("base64"), content_type: "application/octet-stream" }]),
  "/fn/jobs/dropped": (req, body, res) => enqueue(req, body, res, [{ state: "succeeded", result_dropped: true }]),
  "/fn/jobs/forever": (req, body, res) => enqueue(req, body, res, [pending]),
  "/fn/jobs/nolocation": (req, body, res) => json(res, 202, { queued: true }),
  "/fn/jobs/sync": (req, body, res) => json(res, 200, { now: true }), // the preference ignored
  "/fn/events/order_placed": (req, body, res) => json(res, 202, { id: "ev-" + (req.headers["idempotency-key"] ?? "1") }),
  "/fn/events/nothing": (req, body, res) => json(res, 200, { not: "an emit" }),
});
function taskStatus(req, res) {
  const id = req.url.slice("/tasks/".length);
  const t = tasks.get(id);
  if (!t || req.headers.authorization !== "Bearer good-token") return json(res, 404, { error: { code: "not_found", message: "no such task" } }, "rid-404");
  const st = t.states[Math.min(t.reads++, t.states.length - 1)];
  json(res, 200, { id, ...st }, "rid-status-" + id);
}

function json(res, status, value, requestId) {
  const headers = { "Content-Type": "application/json" };
  if (requestId) headers["X-Request-Id"] = requestId;
  res.writeHead(status, headers);
  res.end(JSON.stringify(value));
}

before(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.url.startsWith("/tasks/")) return taskStatus(req, res);
      const route = routes[req.url];
      if (!route) return json(res, 404, { error: { code: "not_found", message: "no route" } });
      route(req, body, res);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseURL = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

function lastRequest() {
  return seen[seen.length - 1];
}

async function rejects(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MeshError, `got ${err?.constructor?.name}: ${err}; want a MeshError`);
    return err;
  }
  assert.fail("the call succeeded; want a MeshError");
}

test("call sends POST with JSON params and returns the JSON result", async () => {
  const mesh = createClient({ baseURL: baseURL + "/" });
  const got = await mesh.call("greeter", "hello", { name: "Ada" });
  assert.deepEqual(got, { greeting: "Hello, Ada!" });
  const r = lastRequest();
  assert.equal(r.method, "POST");
  assert.equal(r.url, "/fn/greeter/hello");
  assert.equal(r.headers["content-type"], "application/json");
  assert.equal(r.body, '{"name":"Ada"}');
  assert.equal(r.headers.authorization, undefined);
  assert.equal(r.headers["mesh-timeout-ms"], undefined);
});

test("undefined params send no body; an empty answer is null", async () => {
  const mesh = createClient({ baseURL });
  assert.equal(await mesh.call("greeter", "empty"), null);
  const r = lastRequest();
  assert.equal(r.body, "");
  assert.equal(r.headers["content-type"], undefined);
});

test("token: a string, a function, an async function; per call over the client's", async () => {
  for (const token of ["good-token", () => "good-token", async () => "good-token"]) {
    const mesh = createClient({ baseURL, token });
    assert.deepEqual(await mesh.call("accounts", "me"), { user: "ada" });
    assert.equal(lastRequest().headers.authorization, "Bearer good-token");
  }
  const mesh = createClient({ baseURL, token: "stale" });
  assert.deepEqual(await mesh.call("accounts", "me", undefined, { token: "good-token" }), { user: "ada" });

  // The function is asked before every call, so a refreshed token is used.
  let n = 0;
  const refreshing = createClient({ baseURL, token: () => (++n === 1 ? "old" : "good-token") });
  const err = await rejects(refreshing.call("accounts", "me"));
  assert.equal(err.status, 401);
  assert.deepEqual(await refreshing.call("accounts", "me"), { user: "ada" });
  assert.equal(n, 2);

  // No token: no Authorization header.
  await rejects(createClient({ baseURL, token: () => null }).call("accounts", "me"));
  assert.equal(lastRequest().headers.authorization, undefined);
});

test("the gateway's error body becomes the MeshError", async () => {
  const mesh = createClient({ baseURL });
  let err = await rejects(mesh.call("accounts", "me"));
  assert.equal(err.code, "unauthenticated");
  assert.equal(err.status, 401);
  assert.equal(err.message, "sign in first");
  assert.equal(err.requestId, "rid-401");
  assert.equal(err.name, "MeshError");
  assert.ok(err instanceof Error);

  err = await rejects(mesh.call("accounts", "profile", { user: "grace" }));
  assert.equal(err.code, "permission_denied");
  assert.equal(err.status, 403);
  assert.equal(err.requestId, "rid-403", "the header's request ID when the body has none");
});

test("a non-JSON error answer: the status's code and a message saying what came", async () => {
  const err = await rejects(createClient({ baseURL }).call("billing", "invoices"));
  assert.equal(err.code, "bad_reply");
  assert.equal(err.status, 502);
  assert.match(err.message, /HTTP 502 .*without a funcmesh error body \(text\/html\)/);
  assert.equal(err.requestId, "rid-proxy");
});

test("a 2xx answer that is not JSON", async () => {
  const mesh = createClient({ baseURL });
  let err = await rejects(mesh.call("greeter", "badjson"));
  assert.equal(err.code, "bad_reply");
  assert.equal(err.status, 200);
  assert.match(err.message, /not valid JSON/);
  assert.equal(err.requestId, "rid-bad");

  err = await rejects(mesh.call("greeter", "text"));
  assert.equal(err.code, "bad_reply");
  assert.match(err.message, /text\/plain, not JSON/);
  assert.equal(await mesh.call("greeter", "text", undefined, { responseType: "text" }), "plain words");
  const bytes = await mesh.call("greeter", "text", undefined, { responseType: "arrayBuffer" });
  assert.equal(new TextDecoder().decode(bytes), "plain words");
  err = await rejects(mesh.call("greeter", "text", undefined, { responseType: "blob" }));
  assert.equal(err.code, "invalid_argument");
});

test("timeout: sent as Mesh-Timeout-Ms; the client gives up a second later", async () => {
  const mesh = createClient({ baseURL, timeout: 10_000 });
  await mesh.call("greeter", "hello", { name: "x" });
  assert.equal(lastRequest().headers["mesh-timeout-ms"], "10000");
  await mesh.call("greeter", "hello", { name: "x" }, { timeout: 2.5 });
  assert.equal(lastRequest().headers["mesh-timeout-ms"], "3");
  // The header holds at most 10 digits; a longer timeout sets no timer.
  await mesh.call("greeter", "hello", { name: "x" }, { timeout: 1e12 });
  assert.equal(lastRequest().headers["mesh-timeout-ms"], "9999999999");

  const start = Date.now();
  const err = await rejects(mesh.call("slow", "hang", undefined, { timeout: 50 }));
  assert.equal(err.code, "deadline_exceeded");
  assert.equal(err.status, 0);
  assert.match(err.message, /no answer from slow\.hang within 50 ms/);
  assert.ok(Date.now() - start >= 1000, "gave up before the grace second");

  for (const bad of [0, -1, NaN, Infinity, "100"]) {
    const e = await rejects(mesh.call("greeter", "hello", {}, { timeout: bad }));
    assert.equal(e.code, "invalid_argument", `timeout ${bad}`);
  }
});

test("abort: the caller's signal cancels the call", async () => {
  const mesh = createClient({ baseURL });
  const ctl = new AbortController();
  const pending = mesh.call("slow", "hang", undefined, { signal: ctl.signal });
  // Abort once the server has the request, so it is a call in flight.
  const n = seen.length;
  await waitFor(() => seen.length > n);
  ctl.abort(new Error("user left"));
  const err = await rejects(pending);
  assert.equal(err.code, "canceled");
  assert.equal(err.status, 0);
  assert.equal(err.cause.message, "user left");

  const err2 = await rejects(mesh.call("greeter", "hello", {}, { signal: AbortSignal.abort() }));
  assert.equal(err2.code, "canceled");
});

test("network failure: a clear error", async () => {
  // A port that was just free: nobody listens there.
  const probe = http.createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = probe.address().port;
  await new Promise((resolve) => probe.close(resolve));
  const err = await rejects(createClient({ baseURL: `http://127.0.0.1:${port}` }).call("greeter", "hello", {}));
  assert.equal(err.code, "network");
  assert.equal(err.status, 0);
  assert.match(err.message, /calling greeter\.hello failed/);
  assert.ok(err.cause, "the fetch error is the cause");
});

test("bad names are refused before anything is sent", async () => {
  const mesh = createClient({ baseURL });
  const n = seen.length;
  for (const [s, f] of [["", "x"], ["a.b", "x"], ["a", "*"], ["a", "x".repeat(65)], [undefined, "x"], ["a", "../x"]]) {
    const err = await rejects(mesh.call(s, f));
    assert.equal(err.code, "invalid_argument");
    assert.equal(err.status, 0);
  }
  assert.equal(seen.length, n);
});

test("extra headers: the client's, merged with the call's", async () => {
  const mesh = createClient({ baseURL, headers: { "X-Tenant": "t1", "X-Trace": "a" } });
  await mesh.call("greeter", "hello", {}, { headers: { "X-Trace": "b" } });
  const h = lastRequest().headers;
  assert.equal(h["x-tenant"], "t1");
  assert.equal(h["x-trace"], "b");
});

test("a custom fetch and prefix", async () => {
  const urls = [];
  const mesh = createClient({
    baseURL: "http://example.invalid",
    prefix: "/api/fn",
    fetch: async (url, init) => {
      urls.push(url);
      return new Response('{"ok":true}', { status: 200, headers: { "Content-Type": "application/json" } });
    },
  });
  assert.deepEqual(await mesh.call("a", "b", 1), { ok: true });
  assert.deepEqual(urls, ["http://example.invalid/api/fn/a/b"]);
});

test("the default call uses the page's origin: relative URLs", async () => {
  // Node's fetch cannot resolve a relative URL, so the failure names it.
  const err = await rejects(call("greeter", "hello", {}));
  assert.equal(err.code, "network");
});

test("callAsync: 202, then the status with backoff until the result", async () => {
  const mesh = createClient({ baseURL, token: "good-token" });
  let accepted;
  const n = seen.length;
  const got = await mesh.callAsync("jobs", "ok", { order: 7 }, {
    pollInterval: 5, idempotencyKey: "k1", onAccepted: (t) => (accepted = t),
  });
  assert.deepEqual(got, { echoed: { order: 7 } });
  const post = seen[n];
  assert.equal(post.method, "POST");
  assert.equal(post.headers.prefer, "respond-async");
  assert.equal(post.headers["idempotency-key"], "k1");
  assert.equal(accepted.id, "t" + nextTask);
  assert.equal(accepted.status, `${baseURL}/tasks/${accepted.id}`);
  assert.equal(accepted.duplicate, false);
  // Three status reads (pending, running, succeeded), each a GET with the token.
  const reads = seen.slice(n + 1);
  assert.equal(reads.length, 3);
  for (const r of reads) {
    assert.equal(r.method, "GET");
    assert.equal(r.url, "/tasks/" + accepted.id);
    assert.equal(r.headers.authorization, "Bearer good-token");
  }
});

test("callAsync: a failed task is a MeshError with the task's ID", async () => {
  const err = await rejects(createClient({ baseURL, token: "good-token" }).callAsync("jobs", "fails", {}, { pollInterval: 1 }));
  assert.equal(err.code, "unprocessable");
  assert.equal(err.status, 422);
  assert.equal(err.message, "no such order");
  assert.equal(err.taskId, "t" + nextTask);
  assert.equal(err.requestId, "rid-status-t" + nextTask);
});

test("callAsync: results that are not JSON, and dropped results", async () => {
  const mesh = createClient({ baseURL, token: "good-token" });
  const text = await mesh.callAsync("jobs", "bytes", {}, { pollInterval: 1, responseType: "text" });
  assert.equal(text, "raw\u0000bytes");
  const bytes = await mesh.callAsync("jobs", "bytes", {}, { pollInterval: 1, responseType: "arrayBuffer" });
  assert.equal(new TextDecoder().decode(bytes), "raw\u0000bytes");
  let err = await rejects(mesh.callAsync("jobs", "bytes", {}, { pollInterval: 1 }));
  assert.equal(err.code, "bad_reply");
  assert.match(err.message, /application\/octet-stream/);
  err = await rejects(mesh.callAsync("jobs", "dropped", {}, { pollInterval: 1 }));
  assert.equal(err.code, "too_large");
  assert.ok(err.taskId);
});

test("callAsync: the backoff doubles up to the cap; maxWait and signal end the wait", async () => {
  const mesh = createClient({ baseURL, token: "good-token" });
  const n = seen.length;
  const start = Date.now();
  let err = await rejects(mesh.callAsync("jobs", "forever", {}, { pollInterval: 10, maxPollInterval: 40, maxWait: 300 }));
  const took = Date.now() - start;
  assert.equal(err.code, "deadline_exceeded");
  assert.equal(err.taskId, "t" + nextTask);
  assert.ok(took >= 300 && took < 2000, `gave up after ${took} ms; want about 300`);
  // Waits of 10, 20, 40, 40, ... ms: at most 300/40 + 3 reads, and more
  // than the 3 a doubling without the cap would make.
  const reads = seen.length - n - 1;
  assert.ok(reads >= 4 && reads <= 11, `${reads} status reads`);

  const ctl = new AbortController();
  const pendingCall = mesh.callAsync("jobs", "forever", {}, { pollInterval: 5, signal: ctl.signal, onAccepted: () => setTimeout(() => ctl.abort(), 20) });
  err = await rejects(pendingCall);
  assert.equal(err.code, "canceled");
});

test("callAsync: a status that is not the caller's (404), a 202 without a location, a sync answer", async () => {
  let err = await rejects(createClient({ baseURL, token: "other" }).callAsync("jobs", "ok", {}, { pollInterval: 1 }));
  assert.equal(err.code, "not_found");
  assert.equal(err.status, 404);
  assert.ok(err.taskId);
  const mesh = createClient({ baseURL, token: "good-token" });
  err = await rejects(mesh.callAsync("jobs", "nolocation", {}));
  assert.equal(err.code, "bad_reply");
  assert.equal(err.status, 202);
  assert.deepEqual(await mesh.callAsync("jobs", "sync", {}), { now: true });
});

test("emit: POST to the events route, the event's ID", async () => {
  const mesh = createClient({ baseURL, token: "good-token" });
  assert.equal(await mesh.emit("order_placed", { order: 7 }, { idempotencyKey: "o7" }), "ev-o7");
  const r = lastRequest();
  assert.equal(r.url, "/fn/events/order_placed");
  assert.equal(r.body, '{"order":7}');
  assert.equal(r.headers["idempotency-key"], "o7");
  assert.equal(r.headers.authorization, "Bearer good-token");
  const err = await rejects(mesh.emit("nothing", {}));
  assert.equal(err.code, "bad_reply");
  assert.match(err.message, /events route/);
  assert.equal((await rejects(mesh.emit("bad.type", {}))).code, "invalid_argument");
});

test("codeForStatus", () => {
  assert.equal(codeForStatus(403), "permission_denied");
  assert.equal(codeForStatus(418), "invalid_argument");
  assert.equal(codeForStatus(599), "internal");
  assert.equal(codeForStatus(200), "");
});

async function waitFor(cond, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail("condition not met in time");
    await new Promise((r) => setImmediate(r));
  }
}
