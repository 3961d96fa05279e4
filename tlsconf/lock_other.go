//go:build !unix

package tlsconf

// lockDir is a no-op where flock is missing: concurrent first starts on
// one state_dir are not serialised there.
func lockDir(string) (func(), error) { return func() {}, nil }
