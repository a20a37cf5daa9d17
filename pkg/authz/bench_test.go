package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/authz"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/config"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/orytest"
)

// browserHeaders is what Envoy sends for a typical browser request: a dozen
// cookies of which one is the session, and the usual request headers.
func browserHeaders(session string) map[string]string {
	return map[string]string{
		":method": "GET", ":path": "/api/orders?page=2", ":authority": "app.example.org", ":scheme": "https",
		"accept":            "application/json, text/plain, */*",
		"accept-encoding":   "gzip, deflate, br",
		"accept-language":   "en-US,en;q=0.9",
		"user-agent":        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"x-request-id":      "7f1e1d4c-2b8f-4d4c-9a4e-1f2b3c4d5e6f",
		"x-forwarded-proto": "https",
		"cookie": "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; theme=dark; lang=en; " +
			"consent=necessary%2Canalytics; _fbp=fb.1.1700000000000.1234567890; ajs_anonymous_id=%2212345678-1234%22; " +
			"csrf_token_abc=Zm9vYmFyYmF6cXV4; intercom-id-x=12345678-aaaa-bbbb-cccc-1234567890ab; " + session +
			"; sidebar=collapsed; tz=Europe%2FBerlin; ab_test=B",
	}
}

func benchServer(b *testing.B, fake *orytest.Fake) *authz.Server {
	b.Helper()
	oc, err := ory.New(ory.Options{BaseURL: fake.URL, Timeout: 5 * time.Second, MaxJWTBytes: config.MaxCredentialBytes})
	if err != nil {
		b.Fatal(err)
	}
	d := config.Default()
	s, err := authz.New(authz.Options{
		Tokenizer:       oc,
		Extractor:       credential.NewExtractor(d.SessionCookies, d.SessionTokenHeader, config.MaxCredentialBytes),
		DefaultTemplate: "mesh", OnMissing: config.OnMissingDeny,
		ExpiryLeeway: d.ExpiryLeeway, NegativeTTL: d.NegativeTTL, FetchTimeout: 5 * time.Second, CacheMaxBytes: d.CacheMaxBytes,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

func checkRequest(h map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Id: "1", Method: h[":method"], Path: h[":path"], Host: h[":authority"], Scheme: "https", Headers: h},
	}}}
}

// BenchmarkCheckCacheHit is the hot path: a warm session, no Ory call.
func BenchmarkCheckCacheHit(b *testing.B) {
	fake := orytest.New()
	b.Cleanup(fake.Close)
	s := benchServer(b, fake)
	const sessions = 1000
	reqs := make([]*authv3.CheckRequest, sessions)
	for i := range reqs {
		reqs[i] = checkRequest(browserHeaders(fake.NewSession().CookiePair()))
		if resp, err := s.Check(context.Background(), reqs[i]); err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("warm-up: %v %v", resp, err)
		}
	}
	calls := fake.Calls()
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.Check(ctx, reqs[i%sessions]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 7919
			for pb.Next() {
				if _, err := s.Check(ctx, reqs[i%sessions]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	if fake.Calls() != calls {
		b.Fatalf("cache hits called Ory %d times", fake.Calls()-calls)
	}
}

// BenchmarkCheckCoalescedMiss: 50 concurrent checks of one cold session
// per op, Ory answering in about 1ms; one whoami call per op.
func BenchmarkCheckCoalescedMiss(b *testing.B) {
	fake := orytest.New()
	b.Cleanup(fake.Close)
	fake.SetHook(func(http.ResponseWriter, *http.Request) bool { time.Sleep(time.Millisecond); return false })
	s := benchServer(b, fake)
	const waiters = 50
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		req := checkRequest(browserHeaders(fake.NewSession().CookiePair()))
		errs := make(chan error, waiters)
		for range waiters {
			go func() {
				resp, err := s.Check(ctx, req)
				if err == nil && resp.GetStatus().GetCode() != 0 {
					err = fmt.Errorf("status %v", resp.GetStatus())
				}
				errs <- err
			}()
		}
		for range waiters {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(fake.Calls())/float64(b.N), "whoami/op")
}
