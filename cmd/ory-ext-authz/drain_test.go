package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ory-ext-authz/ory-ext-authz/internal/fakeory"
	"github.com/ory-ext-authz/ory-ext-authz/internal/logcapture"
	"github.com/ory-ext-authz/ory-ext-authz/internal/servertest"
	"github.com/ory-ext-authz/ory-ext-authz/internal/testwait"
)

// runMainEnv makes the test binary run main() instead of the tests, so that
// a test can start the real program as a child process and signal it.
const runMainEnv = "ORY_EXT_AUTHZ_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSIGTERMDrain sends a real SIGTERM to `serve` under steady load with a
// slow Ory (every check in flight for 300ms). Health must turn NOT_SERVING
// before any client sees an error, every check that reached Ory must
// complete OK, the only errors are connection errors after that, and the
// process exits 0.
func TestSIGTERMDrain(t *testing.T) {
	fake := fakeory.New()
	defer fake.Close()
	fake.SetHook(fakeory.Slow(300 * time.Millisecond))
	grpcAddr, httpAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "serve", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--admin-addr", servertest.FreeAddr(t),
		"--ory-url", fake.URL, "--tokenize-as", "mesh", "--shutdown-delay", "1s", "--shutdown-timeout", "10s", "--log-level", "debug")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		logcapture.AssertNoSecrets(t, logs.String(), fake.Secrets())
	}()
	testwait.For(t, "readyz 200", func() bool { return ready(httpAddr) })

	conn := servertest.Dial(t, grpcAddr)
	client := authv3.NewAuthorizationClient(conn)
	health := healthpb.NewHealthClient(conn)

	// seq orders events without clocks: NOT_SERVING seen, first error,
	// OK answers completed after NOT_SERVING.
	var seq, notServingAt, firstErrAt atomic.Int64
	var okTotal, okDraining, errCount atomic.Int64
	var mu sync.Mutex
	var badErrs []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// loop runs step until the test stops it or step returns false.
	loop := func(step func() bool) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !step() {
					return
				}
			}
		})
	}
	loop(func() bool {
		r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			notServingAt.CompareAndSwap(0, seq.Add(1))
			return false
		}
		time.Sleep(10 * time.Millisecond)
		return true
	})
	for range 8 {
		loop(func() bool {
			s := fake.NewSession() // a miss: the check waits 300ms on Ory
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			resp, err := client.Check(ctx, cookieCheck(s))
			cancel()
			n := seq.Add(1)
			if err != nil {
				firstErrAt.CompareAndSwap(0, n)
				errCount.Add(1)
				if status.Code(err) != codes.Unavailable {
					mu.Lock()
					badErrs = append(badErrs, err)
					mu.Unlock()
				}
				return false // the listener is gone; this worker is done
			}
			if resp.GetStatus().GetCode() != 0 {
				mu.Lock()
				badErrs = append(badErrs, status.ErrorProto(resp.GetStatus()))
				mu.Unlock()
				return false
			}
			okTotal.Add(1)
			if notServingAt.Load() != 0 {
				okDraining.Add(1)
			}
			return true
		})
	}
	testwait.For(t, "steady load", func() bool { return okTotal.Load() >= 16 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v, want 0; log:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	close(stop)
	wg.Wait()

	if notServingAt.Load() == 0 {
		t.Fatal("health never reported NOT_SERVING")
	}
	if f := firstErrAt.Load(); f != 0 && f < notServingAt.Load() {
		t.Errorf("a client saw an error (event %d) before health turned NOT_SERVING (event %d)", f, notServingAt.Load())
	}
	if len(badErrs) > 0 {
		t.Errorf("errors other than the closed listener's Unavailable: %v", badErrs)
	}
	if okDraining.Load() == 0 {
		t.Error("no check was answered while draining")
	}
	// Every check that reached Ory (one call each, all distinct sessions)
	// completed OK: GracefulStop let the in-flight ones finish.
	if calls := fake.Calls(); calls != okTotal.Load() {
		t.Errorf("Ory saw %d checks but %d completed OK: in-flight checks were cut", calls, okTotal.Load())
	}
	t.Logf("%d checks OK (%d while draining), %d connection errors after the listener closed", okTotal.Load(), okDraining.Load(), errCount.Load())
}
