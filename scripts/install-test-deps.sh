#!/usr/bin/env bash
# Installs the real peers the xpra-edge tests run against (Debian 12 "bookworm", as root):
# the xpra 3.1.3 server and client, Xvfb, xterm, the X11 inspection tools, the python modules the
# xpra server needs to draw a window (python3-pil) and to speak rencode, and chromium for the HTML5
# client tests, and PostgreSQL's server binaries for the fleet tests; then a real xpra 6.x built from PyPI's source release (scripts/install-xpra6.sh).
#
# Idempotent and fast: when every package is already installed it only runs dpkg-query, then
# install-xpra6.sh. Otherwise it runs one `apt-get update` and one `apt-get install` of the missing
# packages, from Debian's own mirrors; install-xpra6.sh, which it runs last, also downloads xpra's
# source release and Cython from PyPI the first time.
set -euo pipefail

PACKAGES=(
	xpra            # the real server and client (3.1.3 on bookworm)
	python3-pil     # only a Recommends of xpra, but the server fails every connection without it
	python3-gi-cairo # also only a Recommends of xpra, but the GTK3 client cannot paint a window without it
	python3-rencode # xpra's default packet encoder
	xvfb            # virtual X servers: one per xpra server, one per test client
	xauth           # xpra start creates an Xauthority for its Xvfb
	xterm           # the application started in test sessions
	x11-utils       # xwininfo, xprop: prove a remote window is mapped on the client's display
	xdotool         # type and click into test sessions
	xclip           # own and read X selections: the clipboard tests (e2e TestBridge*) set and read CLIPBOARD on both displays
	libpam0g        # PAM itself (the pam module loads libpam.so.0 at run time: no -dev package)
	chromium        # the HTML5 client, headless
	procps          # ps, pkill (process checks in tests)
	passwd          # useradd, userdel, chpasswd (tests create users)
	util-linux      # runuser, setpriv (servers run as another user)
	ca-certificates
	postgresql      # server binaries under /usr/lib/postgresql/15/bin: internal/pgtest runs a private cluster (not the system service)
	slapd           # OpenLDAP server for the ldap module's tests (internal/ldaptest runs a private
	                # one on loopback; the system service is never configured for or used by tests)
)

# One dpkg-query for all packages: prints "NAME STATUS" for the known ones.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null | awk '$NF == "installed" {print $1}' || true)
missing=()
for p in "${PACKAGES[@]}"; do
	if ! grep -qx "$p" <<<"$installed"; then
		missing+=("$p")
	fi
done

here=$(dirname "$0")
if [ ${#missing[@]} -eq 0 ]; then
	exec bash "$here/install-xpra6.sh"
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: missing packages: ${missing[*]}" >&2
	echo "install-test-deps: run as root (or: sudo $0)" >&2
	exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
apt-get "${apt_opts[@]}" update -qq
# slapd: leave the system's own server unconfigured (no database, no service on port 389); the
# tests run private ones.
if [[ " ${missing[*]} " == *" slapd "* ]]; then
	echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
fi
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"

# Sanity: the binaries the harness execs.
for b in xpra Xvfb xterm xwininfo xprop xdotool xclip chromium runuser setpriv useradd chpasswd slapd slapadd; do
	command -v "$b" >/dev/null || { echo "install-test-deps: $b still missing" >&2; exit 1; }
done
for b in initdb postgres; do
	[ -x "/usr/lib/postgresql/15/bin/$b" ] || { echo "install-test-deps: /usr/lib/postgresql/15/bin/$b missing" >&2; exit 1; }
done

exec bash "$here/install-xpra6.sh"
