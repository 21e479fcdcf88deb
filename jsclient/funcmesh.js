// funcmesh.js: the JavaScript client of a funcmesh gateway, for browsers
// and Node.js (18 or later). One ES module, no dependencies, no build step.
//
//   import { call, createClient, MeshError } from "/funcmesh.js";
//
//   const greeting = await call("greeter", "hello", { name: "Ada" });
//
//   const mesh = createClient({ baseURL: "https://api.example.com", token: () => auth.token() });
//   try {
//     const me = await mesh.call("accounts", "me", undefined, { timeout: 2000 });
//   } catch (err) {
//     if (err instanceof MeshError) console.log(err.code, err.status, err.requestId);
//   }
//
// A call is POST {baseURL}{prefix}/{service}/{function} with the params as
// JSON. The result is the answer's JSON; every failure is a MeshError.
// Durable calls (callAsync) and events (emit) need the host's task and
// event routes.

/** The names the gateway accepts for services and functions. */
const namePattern = /^[A-Za-z0-9_-]{1,64}$/;

/** How much longer than the caller-set timeout the client waits for the
 * gateway's own 504 before it gives up by itself. */
const timeoutGraceMs = 1000;

/** The gateway's statuses and their codes (transport/code.go). */
const statusCodes = {
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  409: "conflict",
  413: "too_large",
  422: "unprocessable",
  429: "resource_exhausted",
  499: "canceled",
  500: "internal",
  501: "not_implemented",
  502: "bad_reply",
  503: "unavailable",
  504: "deadline_exceeded",
};

/**
 * codeForStatus returns the code of an HTTP status: the gateway's own for
 * the statuses it answers with, invalid_argument for other 4xx, internal
 * for other 5xx, and "" for the rest.
 */
export function codeForStatus(status) {
  if (statusCodes[status]) return statusCodes[status];
  if (status >= 400 && status < 500) return "invalid_argument";
  if (status >= 500 && status < 600) return "internal";
  return "";
}

/**
 * MeshError is every failure of a call. code is the gateway's error code
 * ("permission_denied", ...) or one the client sets itself when no HTTP
 * answer came: "network" (the request failed: server unreachable, CORS
 * refused, connection reset), "canceled" (the caller's AbortSignal),
 * "deadline_exceeded" (no answer in time), "invalid_argument" (a bad
 * argument, nothing sent). status is the HTTP status, 0 when no answer
 * came. requestId is the gateway's request ID, "" when unknown; quote it
 * when reporting a problem. cause holds the underlying error, if any;
 * taskId the task's ID when a callAsync failed after the task was stored.
 */
export class MeshError extends Error {
  constructor(code, status, message, requestId = "", options = undefined) {
    super(message, options);
    this.name = "MeshError";
    this.code = code;
    this.status = status;
    this.requestId = requestId;
  }
}

/**
 * createClient returns a client of the gateway at options.baseURL.
 *
 * options (each also settable per call, where noted):
 *   baseURL   the gateway's origin and any path before the prefix;
 *             "" (the default) means the page's own origin. Node needs an
 *             absolute URL.
 *   prefix    the gateway's route prefix, "/fn" by default.
 *   token     a bearer token, or a function (possibly async) returning
 *             one, asked before every call so it may refresh; empty or
 *             null sends no Authorization header. Per call too.
 *   timeout   milliseconds the call may take, sent to the gateway as
 *             Mesh-Timeout-Ms (the gateway answers 504 after it, bounded
 *             by its own maximum); the client itself gives up a second
 *             later. Per call too.
 *   headers   extra request headers (an object). Per call too, merged.
 *   fetch     the fetch function to use, globalThis.fetch by default.
 *
 * Per call only:
 *   signal        an AbortSignal that cancels the call.
 *   responseType  "json" (the default), "text" or "arrayBuffer".
 *
 * The client has three methods:
 *
 *   call(service, fn, params, options)       the result of service.fn
 *   callAsync(service, fn, params, options)  the same, as a durable task:
 *       POSTed with Prefer: respond-async; the gateway answers 202 with
 *       the task's status location, which is read first after
 *       pollInterval ms (200), then twice as long each time up to
 *       maxPollInterval ms (5000), until the task succeeded (its result)
 *       or failed (a MeshError with the last attempt's code, status and
 *       message). maxWait (ms; no limit by default) bounds the whole wait
 *       and signal cancels it (the task itself runs on); onAccepted(task)
 *       is called with {id, status, duplicate} once the task is stored;
 *       idempotencyKey is sent as Idempotency-Key, so that a retried
 *       callAsync stores one task. Errors after acceptance carry taskId.
 *       A gateway that makes the call at once (200) gives its result.
 *   emit(type, payload, options)              the ID of the event emitted:
 *       POST {prefix}/events/{type} (eventsService renames "events"),
 *       answered 202; idempotencyKey as for callAsync.
 */
export function createClient(options = {}) {
  const base = {
    baseURL: options.baseURL ?? "",
    prefix: options.prefix ?? "/fn",
    token: options.token,
    timeout: options.timeout,
    headers: options.headers ?? {},
    fetch: options.fetch,
  };

  const merge = (callOptions) => ({ ...base, ...callOptions, headers: { ...base.headers, ...(callOptions.headers ?? {}) } });

  async function call(service, fn, params, callOptions = {}) {
    const o = merge(callOptions);
    const res = await send(o, service, fn, params, {});
    return await result(res, o.responseType ?? "json");
  }

  async function callAsync(service, fn, params, callOptions = {}) {
    const o = merge(callOptions);
    const extra = { Prefer: "respond-async" };
    if (o.idempotencyKey) extra["Idempotency-Key"] = String(o.idempotencyKey);
    const answer = await send(o, service, fn, params, extra);
    if (answer.res.status !== 202) {
      // The gateway made the call at once (it ignores the preference).
      return await result(answer, o.responseType ?? "json");
    }
    let accepted;
    try {
      accepted = JSON.parse(new TextDecoder().decode(answer.bytes));
    } catch {
      accepted = undefined;
    }
    const where = answer.res.headers.get("Location") || accepted?.status;
    if (typeof accepted?.id !== "string" || typeof where !== "string" || where === "") {
      throw new MeshError("bad_reply", 202, "funcmesh: a 202 answer without the task's ID and status location", answer.requestId);
    }
    const task = { id: accepted.id, status: resolveURL(where, answer.url), duplicate: accepted.duplicate === true };
    o.onAccepted?.(task);
    return await waitForTask(o, task);
  }

  async function emit(type, payload, callOptions = {}) {
    const o = merge(callOptions);
    const extra = {};
    if (o.idempotencyKey) extra["Idempotency-Key"] = String(o.idempotencyKey);
    const answer = await send(o, o.eventsService ?? "events", type, payload, extra);
    let id;
    try {
      id = JSON.parse(new TextDecoder().decode(answer.bytes))?.id;
    } catch {
      id = undefined;
    }
    if (answer.res.status !== 202 || typeof id !== "string") {
      throw new MeshError("bad_reply", answer.res.status, `funcmesh: HTTP ${answer.res.status} without an event ID: is there an events route?`, answer.requestId);
    }
    return id;
  }

  return { call, callAsync, emit };
}

const defaultClient = createClient();

/**
 * call calls service.fn with params on the page's own origin and returns
 * the result; see createClient for the options.
 */
export function call(service, fn, params, options) {
  return defaultClient.call(service, fn, params, options);
}

/** resolveURL resolves a Location against the URL of the request that
 * answered it, itself relative to the page in a browser. */
function resolveURL(location, requestURL) {
  try {
    const base = new URL(requestURL, globalThis.location?.href);
    return new URL(location, base).href;
  } catch {
    return location;
  }
}

/** sleep waits ms, or throws a "canceled" MeshError when signal aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(canceled(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(canceled(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** waitForTask polls a task's status, waiting longer each time up to a
 * cap, until it has succeeded (its result), failed (a MeshError) or
 * o.maxWait has passed. Every MeshError it throws carries taskId. */
async function waitForTask(o, task) {
  const cap = o.maxPollInterval ?? 5000;
  let wait = Math.min(o.pollInterval ?? 200, cap);
  const deadline = o.maxWait ? Date.now() + o.maxWait : Infinity;
  const withTask = (err) => {
    if (err instanceof MeshError) err.taskId = task.id;
    return err;
  };
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) {
      throw withTask(new MeshError("deadline_exceeded", 0, `funcmesh: task ${task.id} not done within ${o.maxWait} ms`));
    }
    await sleep(Math.min(wait, left), o.signal);
    wait = Math.min(wait * 2, cap);
    let st, requestId;
    try {
      const answer = await get(o, task.status);
      requestId = answer.requestId;
      st = JSON.parse(new TextDecoder().decode(answer.bytes));
    } catch (err) {
      if (err instanceof MeshError) throw withTask(err);
      throw withTask(new MeshError("bad_reply", 200, `funcmesh: the status of task ${task.id} is not JSON`, "", { cause: err }));
    }
    if (st?.state === "succeeded") {
      if (st.result_dropped) {
        throw withTask(new MeshError("too_large", 0, `funcmesh: task ${task.id} succeeded, but its result was larger than the server keeps`, requestId));
      }
      return taskResult(st, o.responseType ?? "json", task, requestId);
    }
    if (st?.state === "failed") {
      const e = st.error ?? {};
      throw withTask(new MeshError(e.code || "internal", e.status || 0, e.message || `funcmesh: task ${task.id} failed`, requestId));
    }
  }
}

/** taskResult returns a succeeded task's result as asked. */
function taskResult(st, responseType, task, requestId) {
  if (st.result !== undefined) {
    if (responseType === "json") return st.result;
    const text = JSON.stringify(st.result);
    return responseType === "text" ? text : new TextEncoder().encode(text).buffer;
  }
  if (typeof st.result_base64 !== "string") return null;
  const bytes = Uint8Array.from(atob(st.result_base64), (c) => c.charCodeAt(0));
  if (responseType === "arrayBuffer") return bytes.buffer;
  if (responseType === "text") return new TextDecoder().decode(bytes);
  throw new MeshError("bad_reply", 0, `funcmesh: task ${task.id}'s result is ${st.content_type || "not JSON"} (pass responseType "text" or "arrayBuffer" to read it)`, requestId);
}

/** get makes a GET of url (a task status) with the client's token and
 * headers, under o.signal and o.timeout, and returns a 2xx answer. */
async function get(o, url) {
  return await request(o, url, { method: "GET" }, {}, "the task status");
}

/** send checks the names and POSTs params (as JSON) to service.fn; it
 * returns a 2xx answer and throws a MeshError for everything else. */
async function send(o, service, fn, params, extraHeaders) {
  for (const [what, name] of [["service", service], ["function", fn]]) {
    if (typeof name !== "string" || !namePattern.test(name)) {
      throw new MeshError("invalid_argument", 0, `funcmesh: invalid ${what} name ${JSON.stringify(name)}: want 1 to 64 of A-Z a-z 0-9 _ -`);
    }
  }
  const headers = { ...extraHeaders };
  let body;
  if (params !== undefined) {
    body = JSON.stringify(params);
    headers["Content-Type"] = "application/json";
  }
  const url = o.baseURL.replace(/\/+$/, "") + o.prefix + "/" + service + "/" + fn;
  return await request(o, url, { method: "POST", body }, headers, `${service}.${fn}`);
}

/** request makes one HTTP request with the token, the caller's headers,
 * signal and timeout, and returns {res, bytes, requestId, url} for a 2xx
 * answer; it throws a MeshError for everything else. what names the
 * request in messages. */
async function request(o, url, init, extraHeaders, what) {
  if (o.timeout !== undefined && o.timeout !== null && !(Number.isFinite(o.timeout) && o.timeout > 0)) {
    throw new MeshError("invalid_argument", 0, `funcmesh: timeout ${o.timeout}: want a number of milliseconds > 0`);
  }
  const doFetch = o.fetch ?? globalThis.fetch;
  if (typeof doFetch !== "function") {
    throw new MeshError("invalid_argument", 0, "funcmesh: no fetch function: pass options.fetch");
  }
  const headers = { Accept: "application/json", ...extraHeaders, ...o.headers };
  const token = typeof o.token === "function" ? await o.token() : o.token;
  if (token) headers["Authorization"] = "Bearer " + token;
  // Whole milliseconds, rounded up, at most the header's 10 digits.
  if (o.timeout) headers["Mesh-Timeout-Ms"] = String(Math.min(Math.ceil(o.timeout), 9_999_999_999));

  // One controller for the caller's signal and our own timer.
  const ctl = new AbortController();
  let timedOut = false;
  let timer;
  const onAbort = () => ctl.abort(o.signal.reason);
  if (o.signal) {
    if (o.signal.aborted) throw canceled(o.signal);
    o.signal.addEventListener("abort", onAbort, { once: true });
  }
  if (o.timeout) {
    // setTimeout takes at most 2^31-1 ms; a longer timeout sets no timer.
    const wait = Math.ceil(o.timeout) + timeoutGraceMs;
    if (wait <= 0x7fffffff) {
      timer = setTimeout(() => {
        timedOut = true;
        ctl.abort();
      }, wait);
    }
  }

  try {
    const res = await doFetch(url, { ...init, headers, signal: ctl.signal });
    const requestId = res.headers.get("X-Request-Id") ?? "";
    if (res.status >= 200 && res.status < 300) {
      // Read the body under the same signal and timer.
      const bytes = await res.arrayBuffer();
      return { res, bytes, requestId, url };
    }
    const text = await res.text();
    throw errorFromAnswer(res, text, requestId);
  } catch (err) {
    if (err instanceof MeshError) throw err;
    if (o.signal?.aborted) throw canceled(o.signal);
    if (timedOut) {
      throw new MeshError("deadline_exceeded", 0, `funcmesh: no answer from ${what} within ${o.timeout} ms`, "", { cause: err });
    }
    throw new MeshError("network", 0, `funcmesh: calling ${what} failed: ${err?.message ?? err} (the gateway unreachable, or CORS refused the request)`, "", { cause: err });
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", onAbort);
  }
}

function canceled(signal) {
  return new MeshError("canceled", 0, "funcmesh: call canceled", "", { cause: signal.reason });
}

/** errorFromAnswer turns a non-2xx answer into a MeshError: the gateway's
 * JSON error body when it is one, else the status's code and a message
 * that says what came instead (a proxy's HTML page, say). */
function errorFromAnswer(res, text, requestId) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const e = parsed?.error;
  if (e && typeof e === "object" && typeof e.code === "string" && typeof e.message === "string") {
    return new MeshError(e.code, res.status, e.message, typeof e.request_id === "string" && e.request_id ? e.request_id : requestId);
  }
  const type = res.headers.get("Content-Type") || "no content type";
  return new MeshError(codeForStatus(res.status) || "bad_reply", res.status,
    `funcmesh: HTTP ${res.status} ${res.statusText} without a funcmesh error body (${type})`, requestId);
}

/** result decodes a 2xx answer as asked. */
async function result({ res, bytes, requestId }, responseType) {
  switch (responseType) {
    case "arrayBuffer":
      return bytes;
    case "text":
      return new TextDecoder().decode(bytes);
    case "json":
      break;
    default:
      throw new MeshError("invalid_argument", 0, `funcmesh: responseType ${JSON.stringify(responseType)}: want "json", "text" or "arrayBuffer"`);
  }
  const text = new TextDecoder().decode(bytes);
  if (text === "") return null;
  const type = (res.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
  if (type !== "" && type !== "application/json" && !type.endsWith("+json")) {
    throw new MeshError("bad_reply", res.status, `funcmesh: the answer is ${type}, not JSON (pass responseType "text" or "arrayBuffer" to read it)`, requestId);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MeshError("bad_reply", res.status, `funcmesh: the answer is not valid JSON: ${err.message}`, requestId, { cause: err });
  }
}
