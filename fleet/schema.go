package fleet

// The schema of the users and certificates. Other files register their
// own migrations (versions 3 and up) the same way.
func init() {
	register(
		Migration{Version: 1, Name: "users", SQL: schemaUsers},
		Migration{Version: 2, Name: "certificates", SQL: schemaCertificates},
	)
}

// schemaUsers is xpra's sqlite users table (same columns, same meaning;
// NULL is allowed where xpra allows it) with an id that keeps the rows
// in insertion order as sqlite's rowid does.
const schemaUsers = `
CREATE TABLE edge_users (
	id              bigserial PRIMARY KEY,
	username        text NOT NULL,
	password        text,
	uid             text,
	gid             text,
	displays        text,
	env_options     text,
	session_options text
);
CREATE INDEX edge_users_username ON edge_users (username, id);
`

// schemaCertificates backs tlsconf's certmagic storage: one row per key
// (certmagic's "directory" paths are prefixes of keys; there are no
// directory rows).
const schemaCertificates = `
CREATE TABLE edge_cert_data (
	key      text PRIMARY KEY,
	value    bytea NOT NULL,
	modified timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX edge_cert_data_prefix ON edge_cert_data (key text_pattern_ops);
`
