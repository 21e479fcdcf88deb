// Calls funcmesh's Space Cloud endpoint with Space Cloud's own JavaScript
// client, space-api, as a Space Cloud frontend does:
//
//   const api = new API(project, url); api.setToken(token);
//   const res = await api.call(service, func, params, timeout); // {status, data}
//
// The Go test (spacecloud/spaceapi_test.go) gives the calls as JSON in the
// CALLS environment variable, a list of
//   {"client": "current"|"legacy", "token": "...", "service": "...",
//    "func": "...", "params": ..., "timeout": ...}
// and reads one JSON line per call from stdout: {"status", "data"} as
// space-api resolved them, or {"threw"} when it rejected.
// "current" is space-api 0.19.3 (the /services/ path), "legacy" 0.15.0
// (the /functions/ path).
"use strict";

const clients = {
  current: require("space-api").API,
  legacy: require("space-api-legacy").API,
};

async function main() {
  const url = process.env.BASE_URL;
  const project = process.env.PROJECT;
  const calls = JSON.parse(process.env.CALLS);
  for (const c of calls) {
    const api = new clients[c.client || "current"](project, url);
    if (c.token) api.setToken(c.token);
    let out;
    try {
      // undefined lets space-api send its own default (5000).
      const res = await api.call(c.service, c.func, c.params, c.timeout);
      out = { status: res.status, data: res.data };
    } catch (e) {
      out = { threw: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
