#!/usr/bin/env bash
# Install campus-gateway on a Debian box (run as root), or remove it.
#
#   scripts/install.sh               install or update (safe to run again)
#   scripts/install.sh --uninstall   remove the program and the unit; keep config and data
#   scripts/install.sh --purge       remove config, secrets and data as well
#
# Puts a virtualenv with the pinned dependencies at PREFIX (/opt/campus-gateway),
# the unit in UNITDIR, the system user campus-gateway (in dialout, for serial
# adapters), an example config and a secrets/ directory (group campus-gateway,
# mode 0750, files 0640: the service reads them, other users cannot)
# in SYSCONFDIR (/etc/campus-gateway), creates STATEDIR (/var/lib/campus-gateway),
# then runs check-config on the installed config.
#
# DESTDIR=/some/root installs into a tree under that root (a test, an image
# build). The virtualenv is then built in place at DESTDIR/PREFIX: a venv names
# its own path in its scripts, so it runs there and nowhere else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=$PWD

DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/opt/campus-gateway}"
SYSCONFDIR="${SYSCONFDIR:-/etc/campus-gateway}"
STATEDIR="${STATEDIR:-/var/lib/campus-gateway}"
UNITDIR="${UNITDIR:-/etc/systemd/system}"
PYTHON="${PYTHON:-python3}"
GROUP=campus-gateway
UNIT=campus-gateway.service
mode="install"
case "${1:-}" in
    "") ;;
    --uninstall) mode="uninstall" ;;
    --purge) mode="purge" ;;
    *) echo "usage: $0 [--uninstall|--purge]" >&2; exit 64 ;;
esac

say() { echo "install: $*" >&2; }
live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

if [ "$mode" != "install" ]; then
    if live; then
        systemctl disable --now "$UNIT" 2>/dev/null || true
    fi
    rm -f "$DESTDIR$UNITDIR/$UNIT"
    rm -rf "$DESTDIR$PREFIX"
    say "removed $PREFIX and $UNITDIR/$UNIT"
    if [ "$mode" = "purge" ]; then
        rm -rf "$DESTDIR$SYSCONFDIR" "$DESTDIR$STATEDIR"
        say "purged $SYSCONFDIR and $STATEDIR"
    else
        say "kept $SYSCONFDIR (config, secrets) and $STATEDIR (outbox: the alarm record)"
    fi
    live && systemctl daemon-reload
    exit 0
fi

# The service's system user: no login, no home; a member of dialout (serial
# adapters); its group reads the secrets. A real install only: a DESTDIR tree
# has no user database of its own.
if [ -z "$DESTDIR" ]; then
    if ! getent passwd "$GROUP" >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir "$STATEDIR" \
            --shell /usr/sbin/nologin --groups dialout "$GROUP"
        say "created system user $GROUP (groups: $GROUP, dialout)"
    elif ! id -nG "$GROUP" | grep -qw dialout; then
        usermod -aG dialout "$GROUP"
    fi
fi

venv="$DESTDIR$PREFIX"
if [ ! -x "$venv/bin/python" ]; then
    say "creating the virtualenv $venv"
    "$PYTHON" -m venv "$venv"
fi
say "installing campus-gateway and its pinned dependencies into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check ${PIP_ARGS:-} "$SRC"
install -d -m 0755 "$venv/share/doc/campus-gateway"
install -m 0644 README.md "$venv/share/doc/campus-gateway/README.md"

install -d -m 0755 "$DESTDIR$UNITDIR"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@STATEDIR@|$STATEDIR|g" \
    systemd/$UNIT >"$DESTDIR$UNITDIR/$UNIT.new"
chmod 0644 "$DESTDIR$UNITDIR/$UNIT.new"
mv "$DESTDIR$UNITDIR/$UNIT.new" "$DESTDIR$UNITDIR/$UNIT"

conf="$DESTDIR$SYSCONFDIR"
install -d -m 0755 "$conf"
install -d -m 0750 "$conf/secrets"
if [ -z "$DESTDIR" ]; then
    chgrp "$GROUP" "$conf/secrets"
    find "$conf/secrets" -type f -exec chgrp "$GROUP" {} + -exec chmod 0640 {} +
fi
if [ ! -e "$conf/gateway.toml" ]; then
    install -m 0644 config/example.toml "$conf/gateway.toml"
    say "wrote the example config $SYSCONFDIR/gateway.toml: edit it for the school"
else
    say "kept the existing $SYSCONFDIR/gateway.toml"
fi
install -d -m 0750 "$DESTDIR$STATEDIR"
[ -z "$DESTDIR" ] && chown "$GROUP:$GROUP" "$DESTDIR$STATEDIR"
live && systemctl daemon-reload

say "checking $SYSCONFDIR/gateway.toml"
if "$venv/bin/campus-gateway" check-config "$conf/gateway.toml"; then
    say "ready: systemctl enable --now campus-gateway; then: campus-gateway status $SYSCONFDIR/gateway.toml"
else
    say "NOT READY: fix what check-config says (secrets go in $SYSCONFDIR/secrets/, group $GROUP,"
    say "mode 0640), run it again, then: systemctl enable --now campus-gateway"
fi
