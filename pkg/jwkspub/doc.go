// Package jwkspub publishes the public keys of Kratos' session tokenizer as a
// JSON Web Key Set over HTTP, so that the verifiers of the minted JWTs (Envoy's
// jwt_authn remote_jwks, Istio's RequestAuthentication jwksUri, any JWT
// library) fetch them instead of holding a copy made by hand. Kratos itself
// publishes no tokenizer keys.
//
// A Publisher serves one file of public keys at Path with Cache-Control
// max-age, an ETag and 304 answers to If-None-Match. Only public keys are ever
// served: a file holding a private key (the file Kratos' jwks_url points at)
// or a symmetric key is refused, at New and on every reload. The file is
// re-read when it changes, checked on each request as pkg/server re-reads its
// TLS files; a change that is refused or cannot be read keeps the last good
// set, is logged and is reported to the Observer.
package jwkspub
