// The web example's script: it signs in with a token and calls the
// quickstart's functions through funcmesh.js. Everything shown is set with
// textContent, never as HTML, since results and messages come from outside.
import { createClient, MeshError } from "./funcmesh.js";

const $ = (id) => document.getElementById(id);
const tokenKey = "funcmesh-example-token";

// The gateway: the one the server configured ("" is this page's own
// origin), or what the person types. It is never read from the URL: a
// link could otherwise send the token to a gateway of its choosing.
$("gateway").value = document.querySelector('meta[name="funcmesh-gateway"]').content;

function showWhere() {
  const gateway = $("gateway").value.trim();
  let origin = location.origin;
  try {
    origin = new URL(gateway || location.href, location.href).origin;
  } catch {
    $("where").textContent = `The gateway ${gateway} is not a URL.`;
    return;
  }
  $("where").textContent = origin !== location.origin
    ? `This page: ${location.origin} · gateway: ${origin} (another origin: CORS)`
    : `This page and the gateway: ${location.origin} (same origin)`;
}
$("gateway").addEventListener("input", showWhere);
showWhere();

// A link from the quickstart carries the token in the fragment, which
// never reaches a server; keep it for this tab and drop it from the URL.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem(tokenKey, decodeURIComponent(location.hash.slice("#token=".length)));
  history.replaceState(null, "", location.pathname + location.search);
}

// client returns a client of the gateway in the field. The token is asked
// for before every call, so signing in or out applies to the next call.
function client() {
  return createClient({ baseURL: $("gateway").value.trim(), token: () => sessionStorage.getItem(tokenKey) });
}

// claims reads a JWT's payload for display; the gateway verifies it.
function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

function showUser() {
  const token = sessionStorage.getItem(tokenKey);
  const c = token ? claims(token) : null;
  const user = $("user");
  if (!token) {
    user.textContent = "Not signed in: calls go out without a token.";
    user.dataset.signedIn = "no";
  } else if (!c) {
    user.textContent = "Signed in with a token that is not a JWT (the gateway will answer 401).";
    user.dataset.signedIn = "yes";
  } else {
    const exp = c.exp ? ` until ${new Date(c.exp * 1000).toLocaleString()}` : "";
    user.textContent = `Signed in as ${c.sub ?? "?"}${c.name ? ` (${c.name})` : ""}${exp}`;
    user.dataset.signedIn = "yes";
  }
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim().replace(/^TOKEN='?|'$/g, "");
  if (token) sessionStorage.setItem(tokenKey, token);
  $("token").value = "";
  showUser();
});
$("signout-button").addEventListener("click", () => {
  sessionStorage.removeItem(tokenKey);
  showUser();
});
$("clear").addEventListener("click", () => $("log").replaceChildren());

let seq = 0;

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// run calls service.fn with params and adds what happened to the log.
async function run(service, fn, params) {
  const n = ++seq;
  const timeout = Number($("timeout").value) || undefined;
  const started = performance.now();
  const entry = el("li");
  entry.dataset.seq = String(n);
  entry.dataset.call = `${service}.${fn}`;
  const head = el("div", "head");
  head.append(el("code", "", `${service}.${fn}`));
  const status = el("span", "status", "…");
  head.append(status);
  entry.append(head);
  $("log").prepend(entry);
  try {
    const result = await client().call(service, fn, params, { timeout });
    status.textContent = "200 OK";
    entry.append(el("pre", "result", JSON.stringify(result, null, 2)));
    entry.dataset.outcome = "ok";
  } catch (err) {
    if (!(err instanceof MeshError)) throw err;
    status.textContent = err.status ? `${err.status}` : "no answer";
    const line = el("div", "error");
    line.append(el("span", "code", err.code), " ", el("span", "message", err.message));
    entry.append(line);
    const rid = el("div", "rid", "request ID ");
    rid.append(el("code", "request-id", err.requestId || "(none)"));
    entry.append(rid);
    entry.dataset.outcome = "error";
    entry.dataset.code = err.code;
  } finally {
    head.append(el("span", "ms", `${Math.round(performance.now() - started)} ms`));
    entry.dataset.done = "yes";
  }
}

$("call-hello").addEventListener("click", () => run("greeter", "hello", { name: $("name").value }));
$("call-welcome").addEventListener("click", () => run("greeter", "welcome"));
$("call-me").addEventListener("click", () => run("accounts", "me"));
$("call-profile").addEventListener("click", () => run("accounts", "profile", { user: $("profile-user").value }));
$("call-invoices").addEventListener("click", () => run("billing", "invoices"));

showUser();
document.body.dataset.ready = "yes";
