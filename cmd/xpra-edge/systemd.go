package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/xpra-edge/xpra-edge/edge"
)

// notify tells systemd about state changes (Type=notify); a no-op when
// not started by systemd.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Debug("sd_notify", "err", err)
	}
}

// adoptActivatedSockets hands sockets passed by systemd (LISTEN_FDS) to
// the listeners whose bind address they match: same port, and the same
// host or a wildcard. Sockets that match no listener are an error, so a
// unit and a config that disagree are caught at start.
func adoptActivatedSockets(st *edge.State, log *slog.Logger) error {
	lns, err := activation.Listeners()
	if err != nil {
		return fmt.Errorf("systemd socket activation: %w", err)
	}
	for _, ln := range lns {
		if ln == nil {
			continue
		}
		matched := false
		for _, l := range st.Listeners {
			if l.Listener == nil && sameAddr(ln.Addr(), l.Address) {
				l.Listener = ln
				matched = true
				log.Info("using socket from systemd", "listener", l.Name, "addr", ln.Addr().String())
				break
			}
		}
		if !matched {
			return fmt.Errorf("systemd passed socket %s that matches no [[listener]] bind", ln.Addr())
		}
	}
	return nil
}

func sameAddr(a net.Addr, bind string) bool {
	if ua, ok := a.(*net.UnixAddr); ok {
		return ua.Name == bind
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil || port != strconv.Itoa(ta.Port) {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || ip == nil || ip.IsUnspecified() || ta.IP.IsUnspecified() || ip.Equal(ta.IP)
}
