#!/usr/bin/env bash
# Builds a real xpra 6.x from its source release on PyPI into a private prefix, next to
# Debian's xpra 3.1.3, and exposes it as `xpra6` (/usr/local/bin/xpra6). The e2e tests use it
# as the modern peer: client and server.
#
#   XPRA6_VERSION   the release to build (default: the newest 6.x PyPI serves; when PyPI cannot
#                   be asked, the newest one already built)
#   XPRA6_CACHE     where builds are kept (default /var/cache/xpra-edge/xpra6); one
#                   directory per version, so a second run with the same version only checks it
#
# Debian 12 ships no xpra 6. xpra >= 6.5 needs Cython >= 3, which Debian 12 does not have: a
# Cython from PyPI goes into the cache's build venv and is used only to build. Nothing is
# installed into Debian's python or /etc/xpra (which belong to 3.1.3): the prefix holds
# bin/, lib/python/ and etc/xpra, and the wrapper points xpra 6 at them.
set -euo pipefail

CACHE=${XPRA6_CACHE:-/var/cache/xpra-edge/xpra6}
WRAPPER=${XPRA6_WRAPPER:-/usr/local/bin/xpra6}
CYTHON_SPEC='cython>=3.1,<3.3'

log() { echo "install-xpra6: $*" >&2; }

# What the build and the running peer need from Debian.
BUILD_PACKAGES=(
	gcc pkg-config python3-dev python3-setuptools python3-venv
	libx11-dev libxtst-dev libxcomposite-dev libxdamage-dev libxres-dev libxkbfile-dev
	libxfixes-dev libxrandr-dev libxi-dev libxxhash-dev liblz4-dev libbrotli-dev
	libturbojpeg0-dev libwebp-dev libgtk-3-dev python-gi-dev python3-cairo-dev
)
RUN_PACKAGES=(
	python3-gi python3-gi-cairo gir1.2-gtk-3.0 python3-cairo python3-pil python3-xdg
	python3-cryptography python3-paramiko python3-dbus python3-yaml python3-opengl
	python3-numpy xvfb xauth x11-xkb-utils xterm
)

# The optional parts a headless test peer does not need (or this machine cannot build).
SETUP_FLAGS=(
	--without-nvidia --without-vpx --without-enc_x264 --without-openh264 --without-avif
	--without-csc_libyuv --without-evdi --without-drm --without-v4l2 --without-pytorch
	--without-gstreamer --without-audio --without-printing --without-webcam --without-docs
	--without-service --without-sd_listen --without-wireshark --without-Xdummy
	--without-Xdummy_wrapper --without-qrencode --without-tests --without-wayland_client
	--without-wayland_server --without-qt6_client --without-pyglet_client --without-tk_client
	--without-pam # the proxy does PAM itself; xpra's own module needs libpam0g-dev
)

install_debs() {
	local installed missing=()
	installed=$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null | awk '$NF == "installed" {print $1}' || true)
	for p in "$@"; do
		grep -qx "$p" <<<"$installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		log "missing packages: ${missing[*]} (run as root)"
		return 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
	apt-get "${apt_opts[@]}" update -qq
	apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"
}

# pypi_sdist VERSION-or-empty: prints "VERSION URL SHA256" of the sdist, the newest 6.x when no
# version is given.
pypi_sdist() {
	python3 - "$1" <<'EOF'
import json, sys, urllib.parse, urllib.request
want = sys.argv[1]
base = "https://pypi.org/pypi/xpra/json"
with urllib.request.urlopen(base, timeout=60) as r:
    d = json.load(r)
def key(v):
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return None
if not want:
    vs = [v for v in d["releases"] if key(v) and key(v)[0] == 6 and
          any(f["packagetype"] == "sdist" and not f.get("yanked") for f in d["releases"][v])]
    if not vs:
        sys.exit("no xpra 6.x source release on PyPI")
    want = max(vs, key=key)
files = [f for f in d["releases"].get(want, []) if f["packagetype"] == "sdist"]
if not files:
    sys.exit("PyPI has no source release of xpra " + want)
f = files[0]
print(want, urllib.parse.urljoin(base, f["url"]), f["digests"]["sha256"])
EOF
}

# check PREFIX: the built xpra imports what the tests use.
check() {
	local prefix=$1 site
	site=$prefix/lib/python
	PYTHONPATH=$site /usr/bin/python3 -c '
import xpra, xpra.net.rencodeplus.rencodeplus, xpra.net.lz4.lz4, xpra.net.brotli.compressor
import xpra.x11.bindings.xkb, xpra.x11.bindings.window, xpra.auth.sqlite
print(xpra.__version__)' >/dev/null
}

write_wrapper() {
	local prefix=$1 tmp
	mkdir -p "$prefix/etc/user-conf-empty"
	tmp=$(mktemp "$WRAPPER.XXXXXX")
	cat >"$tmp" <<EOF
#!/bin/sh
# xpra $(cat "$prefix/VERSION") built by xpra-edge's scripts/install-xpra6.sh; Debian's xpra stays 3.1.3.
PYTHONPATH="$prefix/lib/python\${PYTHONPATH:+:\$PYTHONPATH}"
PATH="$prefix/bin:\$PATH"
XPRA_SYSTEM_CONF_DIRS="$prefix/etc/xpra"
XPRA_USER_CONF_DIRS="\${XPRA6_USER_CONF_DIRS:-$prefix/etc/user-conf-empty}"
export PYTHONPATH PATH XPRA_SYSTEM_CONF_DIRS XPRA_USER_CONF_DIRS
exec /usr/bin/python3 "$prefix/bin/xpra" "\$@"
EOF
	chmod 0755 "$tmp"
	mv -f "$tmp" "$WRAPPER"
}

install_debs "${BUILD_PACKAGES[@]}" "${RUN_PACKAGES[@]}"
mkdir -p "$CACHE"

version=${XPRA6_VERSION:-}
if sdist=$(pypi_sdist "$version" 2>/tmp/install-xpra6.pypi.$$); then
	read -r version url sha <<<"$sdist"
else
	if [ -z "$version" ]; then
		# Offline: the newest version already built.
		version=$(ls "$CACHE" 2>/dev/null | grep -E '^6\.[0-9.]+$' | sort -V | tail -1 || true)
	fi
	if [ -z "$version" ] || [ ! -f "$CACHE/$version/VERSION" ]; then
		log "cannot ask PyPI: $(cat /tmp/install-xpra6.pypi.$$)"
		rm -f /tmp/install-xpra6.pypi.$$
		exit 1
	fi
	url="" sha=""
fi
rm -f /tmp/install-xpra6.pypi.$$
prefix=$CACHE/$version

if [ -f "$prefix/VERSION" ] && check "$prefix"; then
	write_wrapper "$prefix"
	exit 0
fi

log "building xpra $version into $prefix"
start=$(date +%s)
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

curl -fsSL --retry 3 -o "$work/xpra.tar.gz" "$url"
echo "$sha  $work/xpra.tar.gz" | sha256sum -c --quiet -
tar -xzf "$work/xpra.tar.gz" -C "$work"
src=$work/xpra-$version

# Cython for the build only, in its own venv (reused across versions).
venv=$CACHE/cython-venv
if ! "$venv/bin/cython" --version >/dev/null 2>&1; then
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q "$CYTHON_SPEC"
fi

rm -rf "$prefix"
(
	cd "$src"
	export PATH="$venv/bin:$PATH"
	# setup.py imports Cython from the interpreter that runs it: Debian's python with the venv's
	# site-packages on its path, so the Debian python modules (gi, cairo) stay visible too.
	PYTHONPATH=$("$venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	export PYTHONPATH
	/usr/bin/python3 setup.py build_ext -j2 "${SETUP_FLAGS[@]}" >"$work/build.log" 2>&1 ||
		{ grep -E -B2 -A8 '(error|Error)[: ]' "$work/build.log" | head -80 >&2; tail -20 "$work/build.log" >&2; exit 1; }
	/usr/bin/python3 setup.py install --home="$prefix" --single-version-externally-managed \
		--record="$work/installed.txt" "${SETUP_FLAGS[@]}" >"$work/install.log" 2>&1 ||
		{ tail -40 "$work/install.log" >&2; exit 1; }
)
check "$prefix" || { log "the build of $version does not import (see above)"; exit 1; }
# VERSION marks a complete build: an interrupted one is rebuilt next time.
echo "$version" >"$prefix/VERSION"
write_wrapper "$prefix"
log "xpra $version built in $(( $(date +%s) - start )) s"
