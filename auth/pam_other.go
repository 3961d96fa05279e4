//go:build !(cgo && linux)

package auth

import "errors"

const pamAvailable = false

func pamCheck(string, string, []byte, bool) error {
	return errors.New("pam support is not compiled in")
}

func pamLoad() error { return errors.New("pam support is not compiled in") }
