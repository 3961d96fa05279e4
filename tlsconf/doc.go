// Package tlsconf provides the certificates for the edge's TLS listeners and
// returns them as a standard *tls.Config: managed and on-demand ACME
// certificates (through certmagic, answering TLS-ALPN-01 on the TLS port and
// HTTP-01 through an http.Handler), static cert/key files that are re-read
// when they change, or a self-signed development CA and leaf kept in a state
// directory. A fleet's nodes share ACME state in PostgreSQL (UsePostgres:
// a certmagic Storage whose locks are session advisory locks).
//
// It is the only package in the repository that imports certmagic. It must
// not own listeners or accept connections (the edge does that with the
// *tls.Config it gets from here), must not expose certmagic types, and must
// never issue a certificate for a name outside the configured domains and
// the on-demand allow-list.
package tlsconf
