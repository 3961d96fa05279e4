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
// It imports pgx and auth; it does not touch sockets, packets, the
// router, the edge or certmagic.
package fleet
