package sessions

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// peerCred connects to a unix socket and returns the pid and uid of the
// process listening on it (SO_PEERCRED).
func peerCred(path string, timeout time.Duration) (pid, uid int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return 0, -1, err
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, -1, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, -1, err
	}
	var cred *syscall.Ucred
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, -1, err
	}
	if gerr != nil {
		return 0, -1, gerr
	}
	return int(cred.Pid), int(cred.Uid), nil
}
