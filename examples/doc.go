// Package examples holds funcmesh's runnable programs, one per directory,
// each started with go run ./examples/NAME:
//
//   - quickstart: a whole mesh in one process (embedded broker, two
//     services, the gateway behind the full middleware chain, a rule config
//     and a Rego policy); prints curl commands to try.
//   - existingapp: an ordinary net/http app that adds the mesh in a few
//     lines, with a broker that services in other processes join with
//     per-service credentials; prints how.
//   - service: a standalone Go service process.
//   - nodeservice: the same kind of service in JavaScript (npm ci, then
//     node service.mjs).
//   - cluster: three brokers in a NATS cluster; calls go on when one stops.
//
// The package itself has no API: its tests build every program, run them
// as separate processes on random ports and check what they print and
// answer, the printed curl commands included.
package examples
