package ory_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ory-ext-authz/ory-ext-authz/pkg/credential"
	"github.com/ory-ext-authz/ory-ext-authz/pkg/ory"
)

// Tokenize asks Ory's whoami for a JWT of the session. Ory's answers are
// classified into error classes; here Ory (a stand-in on loopback) says 401,
// which is ErrUnauthenticated: no valid session.
func ExampleClient_Tokenize() {
	kratos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":401,"status":"Unauthorized"}}`))
	}))
	defer kratos.Close()

	c, err := ory.New(ory.Options{BaseURL: kratos.URL, Timeout: time.Second, MaxJWTBytes: 16 << 10})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	_, err = c.Tokenize(context.Background(), credential.Credential{Kind: credential.KindSessionToken, Value: "ory_st_expired"}, "mesh")
	fmt.Println(errors.Is(err, ory.ErrUnauthenticated))
	// Output: true
}
