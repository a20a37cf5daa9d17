package tokencache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/tokencache"
)

// A cache of answers that a fetch function gets from Ory: the first Get of a
// key fetches, the next ones are hits until the value's hard expiry.
func ExampleCache_Get() {
	fetches := 0
	c, err := tokencache.New(tokencache.Config[string, string]{
		MaxBytes:     1 << 20,
		Leeway:       5 * time.Second,
		FetchTimeout: time.Second,
		Fetch: func(_ context.Context, session string) (string, tokencache.Meta, error) {
			fetches++
			return "Bearer jwt-of-" + session, tokencache.Meta{Expiry: time.Now().Add(time.Minute), Cost: 64}, nil
		},
		Classify: func(error) tokencache.Outcome { return tokencache.Transient },
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	key := tokencache.NewKey("mesh", 2, "ory_kratos_session=MTY5")
	for range 3 {
		v, src, err := c.Get(context.Background(), key, "alice")
		fmt.Println(v, src == tokencache.Hit, err)
	}
	fmt.Println("fetches:", fetches)
	// Output:
	// Bearer jwt-of-alice false <nil>
	// Bearer jwt-of-alice true <nil>
	// Bearer jwt-of-alice true <nil>
	// fetches: 1
}
