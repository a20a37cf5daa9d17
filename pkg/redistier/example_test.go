package redistier_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/redistier"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// The L1-miss path of a replica: Redis first, then one replica asks Ory
// while the others wait for its answer. It needs a running Redis, so it
// has no Output comment and is only compiled.
func Example() {
	ctx := context.Background()
	secret, err := os.ReadFile("/etc/ory-ext-authz/redis-secret")
	if err != nil {
		fmt.Println(err)
		return
	}
	tier, err := redistier.New(ctx, redistier.Options{
		URL:      "redis://127.0.0.1:6379",
		Password: os.Getenv("REDIS_PASSWORD"),
		Secrets:  [][]byte{secret},
		Logger:   slog.Default(),
	})
	if err != nil { // bad options only; a Redis that is down is no error
		fmt.Println(err)
		return
	}
	defer tier.Close()

	askOry := func() (jwt []byte, ttl time.Duration) { return []byte("Bearer eyJ..."), time.Minute }
	key := tokencache.NewKey("mesh", 2, "ory_kratos_session=...")

	if v, ok, _ := tier.Get(ctx, key); ok {
		fmt.Printf("from Redis: %s\n", v)
		return
	}
	unlock, acquired, _ := tier.Lock(ctx, key, time.Second)
	if !acquired {
		if v, ok := tier.WaitFor(ctx, key, 250*time.Millisecond); ok {
			fmt.Printf("filled by another replica: %s\n", v)
			return
		}
	}
	defer unlock()
	jwt, ttl := askOry()
	_ = tier.Set(ctx, key, jwt, ttl) // a failure here costs a miss later, nothing else
	fmt.Printf("from Ory: %s\n", jwt)
}

// Invalidations from any replica reach every subscribed one.
func ExampleTier_Subscribe() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tier, err := redistier.New(ctx, redistier.Options{URL: "redis://127.0.0.1:6379", Secrets: [][]byte{[]byte(os.Getenv("REDIS_SECRET"))}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tier.Close()
	go tier.Subscribe(ctx,
		func(kind, id string, at time.Time) { fmt.Println("invalidate", kind, id, at) },
		func() { fmt.Println("lost: L1 entries filled before now are void") },
		func() { fmt.Println("subscribed") })

	n, err := tier.Invalidate(ctx, redistier.KindSession, "session-id", time.Now())
	if err != nil {
		fmt.Println("applied locally only:", err)
		return
	}
	fmt.Println("replicas reached:", n)
}

// Redis is an optimisation, never a point of failure: with Redis down (here
// nothing listens on the port), New still succeeds and every operation
// fails fast with ErrUnavailable, so the caller goes on with its own cache
// and Ory.
func ExampleNew_redisDown() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // a port nothing listens on
	tier, err := redistier.New(context.Background(), redistier.Options{
		URL:     "redis://" + addr,
		Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")},
		Logger:  slog.New(slog.DiscardHandler),
	})
	fmt.Println("New:", err)
	defer tier.Close()
	_, ok, err := tier.Get(context.Background(), tokencache.NewKey("mesh", 2, "ory_kratos_session=x"))
	fmt.Println("hit:", ok, "unavailable:", errors.Is(err, redistier.ErrUnavailable))
	// Output:
	// New: <nil>
	// hit: false unavailable: true
}
