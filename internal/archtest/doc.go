// Package archtest keeps DESIGN.md's import arrows and conventions true
// with tests over `go list`; it has no non-test code.
package archtest
