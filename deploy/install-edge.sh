#!/bin/sh
# Installs roomsense-edge on a Raspberry Pi (or any systemd Linux):
#   sudo deploy/install-edge.sh [path/to/roomsense-edge] [path/to/edge.toml]
# Binary default: ./roomsense-edge, else target/release/roomsense-edge.
# Config default: keeps an existing /etc/roomsense/edge.toml, else installs
# deploy/examples/edge.toml (edit node.id and mqtt.url afterwards).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${1:-}
conf=${2:-$here/examples/edge.toml}
if [ -z "$bin" ]; then
    for b in ./roomsense-edge "$root/target/release/roomsense-edge"; do
        if [ -x "$b" ]; then bin=$b; break; fi
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "install-edge: no roomsense-edge binary found; pass its path as the first argument" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-edge: run as root (sudo)" >&2
    exit 1
fi

# A dedicated system user in the gpio and bluetooth groups (created if missing).
for g in gpio bluetooth; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
if ! id roomsense >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/roomsense-edge \
        --shell /usr/sbin/nologin --user-group roomsense
fi
usermod -a -G gpio,bluetooth roomsense

install -m 0755 "$bin" /usr/local/bin/roomsense-edge
install -d -m 0755 /etc/roomsense
if [ -f /etc/roomsense/edge.toml ]; then
    echo "install-edge: keeping the existing /etc/roomsense/edge.toml"
else
    install -m 0640 -g roomsense "$conf" /etc/roomsense/edge.toml
    echo "install-edge: installed /etc/roomsense/edge.toml: set node.id and mqtt.url"
fi
install -m 0644 "$root/systemd/roomsense-edge.service" /etc/systemd/system/roomsense-edge.service

# Validate before enabling: a bad config would only exit 78 under systemd.
if ! /usr/local/bin/roomsense-edge check --config /etc/roomsense/edge.toml \
        --outbox /tmp/roomsense-edge-check.db; then
    echo "install-edge: 'roomsense-edge check' reported problems (see above); fix them, then: systemctl enable --now roomsense-edge" >&2
    rm -f /tmp/roomsense-edge-check.db*
    exit 1
fi
rm -f /tmp/roomsense-edge-check.db*
systemctl daemon-reload
systemctl enable --now roomsense-edge
systemctl --no-pager status roomsense-edge || true
