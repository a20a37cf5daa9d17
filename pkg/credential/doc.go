// Package credential finds the Ory credential in the headers Envoy sends with
// a CheckRequest: the session token header, the session cookies, or an
// `Authorization: Bearer ory_st_...` session token, in Kratos' own order.
//
// Envoy sends headers in one of two encodings: the `headers` map (lower-case
// keys, duplicate headers joined with ",") or, with `encode_raw_headers`, the
// `header_map` list (duplicates not merged). Both give the same credential,
// except where the map's "," leaves open whether it joined two Cookie lines
// or is a byte of a cookie value: header_map knows, the map takes the
// reading described at Extractor.
package credential
