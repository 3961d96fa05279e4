// Package fleet is what several xpra-edge nodes share through one
// PostgreSQL database: the connection pool, the schema and its versioned
// migrations (owned by the binary, applied once under a lock, refused
// when the database is newer than the binary), xpra's users table (an
// auth.UserSource for the "postgres" module and the `xpra-edge pg` tool)
// and the tables behind tlsconf's certificate storage.
//
// It never logs or returns in an error the password of a DSN (RedactDSN).
// A database it cannot reach is reported with errors wrapping
// ErrUnavailable, which the edge tells apart from a wrong password: a
// login then fails closed with "authentication error" and bans nobody.
//
// It also holds the fleet's live state (Member): failed logins and bans,
// the nodes and their sessions, as implementations of edge.BanStore and
// edge.SessionRegistry (so it imports edge's interfaces and types; edge
// never imports fleet or pgx).
//
// It imports pgx, auth and edge; it does not touch sockets, packets, the
// router or certmagic.
package fleet
