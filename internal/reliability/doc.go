// Package reliability holds funcmesh's fault, overload, hostile-input and
// security tests: integration tests that run real nats-servers (embedded
// brokers, an external server restarted, a three-node cluster), real
// service processes (internal/meshtest's echosvc, killed with SIGKILL and
// stopped with SIGTERM), and the real HTTP chain a host mounts (RequestID,
// Recover, BodyLimit, JWT, the authz middleware and the mesh gateway) over
// loopback.
//
// The package has no code of its own, only tests, so that they run in
// parallel with the other packages' tests. What each test proves is listed
// in .readme/reliability.md. Every test is bounded in time and in calls:
//
//   - a call is answered by its deadline plus a generous slack, or the
//     test fails as "hung";
//   - "fast" means well under the call timeout (a quarter of it), never a
//     tight latency figure, since the machine running the tests may be
//     loaded;
//   - nothing sleeps to wait for something: tests poll with deadlines;
//   - the chaos loop has a fixed seed and a fixed number of rounds
//     (fewer with -short).
//
// Tests that compare goroutine counts before and after (the broker
// restart, the chaos loop) or measure the heap (overload) do not run in
// parallel, so that the counts are their own; the others do.
package reliability
