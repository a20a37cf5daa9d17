// Package bench is the home of the benchmark harness behind `make bench`: a
// no-op ext_authz baseline server (cmd/noop), a fake Ory process (cmd/fakeory),
// the memory probe (cmd/memory) and the orchestrator (cmd/bench) that runs
// every scenario and prints one markdown table. None of it is part of the
// product binary.
//
// The package itself holds what those programs and the Go benchmarks share
// (the JSON the programs exchange, the benchmark server's configuration,
// Main) and the in-process gRPC benchmarks that compare the real Check
// server with the baseline over loopback (bench_test.go).
package bench
