// Package auth authenticates xpra clients for the edge with xpra's own
// challenge/response: it chooses the digests, makes one-time salts,
// verifies responses in constant time and implements the authentication
// modules (allow, none, reject, password, multifile, sqlite, postgres,
// toml users, pam, ldap). sqlite and postgres share one table module over a
// UserSource (xpra's users schema); the fleet's PostgreSQL source lives in
// package fleet. It also carries the users tools' verbs (UsersCLI) behind
// `xpra-edge sqlite` and `xpra-edge pg`.
//
// It must not touch client sockets, packets or the router (the ldap
// module dials only its directory): the edge reads the
// hellos, sends the challenge packet and calls a Login. It never resolves
// uid/gid names (declared strings are passed on as they are), and it never
// logs or returns in an error a password, a response or a salt.
package auth
