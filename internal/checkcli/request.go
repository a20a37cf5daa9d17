package checkcli

import (
	"crypto/rand"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Loopback peers: servers may log or match on the socket addresses, and values
// that are obviously synthetic keep this request from being mistaken for real
// traffic. 10000 is the listener port of Envoy's own examples.
const (
	sourceIP        = "127.0.0.1"
	sourcePort      = 54321
	destinationIP   = "127.0.0.1"
	destinationPort = 10000
	httpProtocol    = "HTTP/1.1"
)

// requestHeaders lists the header lines of the request in the order a client
// would send them, names lower-cased, one entry per line (not merged).
func requestHeaders(o *options, id string) []header {
	hs := []header{
		{":authority", o.host},
		{":path", o.path},
		{":method", o.method},
		{":scheme", o.scheme},
	}
	if o.cookie != "" {
		hs = append(hs, header{"cookie", o.cookie})
	}
	if o.sessionToken != "" {
		hs = append(hs, header{"x-session-token", o.sessionToken})
	}
	hs = append(hs, o.headers...)
	// Envoy adds these at the edge; a user-given value wins, as it would
	// with use_remote_address: false.
	if !hasHeader(o.headers, "x-forwarded-proto") {
		hs = append(hs, header{"x-forwarded-proto", o.scheme})
	}
	if !hasHeader(o.headers, "x-request-id") {
		hs = append(hs, header{"x-request-id", id})
	}
	return hs
}

// requestID is what Envoy puts in attributes.request.http.id: the x-request-id.
func requestID(o *options) string {
	for _, h := range o.headers {
		if h.name == "x-request-id" {
			return h.value
		}
	}
	return newUUID()
}

func hasHeader(hs []header, name string) bool {
	for _, h := range hs {
		if h.name == name {
			return true
		}
	}
	return false
}

// buildCheckRequest shapes the CheckRequest the way Envoy's ext_authz filter does.
func buildCheckRequest(o *options, id string, now time.Time) *authv3.CheckRequest {
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       id,
		Method:   o.method,
		Path:     o.path, // with the query string: Envoy never fills Query
		Host:     o.host,
		Scheme:   o.scheme,
		Protocol: httpProtocol,
	}
	lines := requestHeaders(o, id)
	if o.rawHeaders {
		// encode_raw_headers: true. Every line is its own entry, nothing merged,
		// and the headers map stays empty.
		hm := &corev3.HeaderMap{}
		for _, h := range lines {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h.name, RawValue: []byte(h.value)})
		}
		httpReq.HeaderMap = hm
	} else {
		m := make(map[string]string, len(lines))
		for _, h := range lines {
			if prev, ok := m[h.name]; ok {
				// Envoy joins repeated lines with "," (no space), also for cookie.
				m[h.name] = prev + "," + h.value
				continue
			}
			m[h.name] = h.value
		}
		httpReq.Headers = m
	}

	var ext map[string]string
	if len(o.contextExt) > 0 {
		ext = o.contextExt
	}
	return &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: socketAddress(sourceIP, sourcePort)},
			Destination: &authv3.AttributeContext_Peer{Address: socketAddress(destinationIP, destinationPort)},
			Request: &authv3.AttributeContext_Request{
				Time: timestamppb.New(now),
				Http: httpReq,
			},
			ContextExtensions: ext,
		},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// newUUID returns a random (version 4) UUID, the form of Envoy's x-request-id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
