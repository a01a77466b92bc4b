#!/usr/bin/env bash
# Builds the Debian 12 base image minik8s/debian:bookworm with no registry: a minbase root
# filesystem made by debootstrap from the machine's own Debian mirror, imported with
# `docker import`. It already holds what a minik8s image needs at run time, because the
# image build itself has no network: Debian's python3 (3.11) with venv, iproute2 and
# iptables for the nodes, etcd-server for the etcd service, procps for ps/kill.
# Idempotent: does nothing when the image is already present.
#   usage: build-base.sh [TAG]     (needs root, debootstrap and a running Docker engine)
set -euo pipefail
TAG="${1:-minik8s/debian:bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-venv,iproute2,iptables,etcd-server,procps,ca-certificates
if docker image inspect "$TAG" >/dev/null 2>&1; then exit 0; fi
command -v debootstrap >/dev/null || {
  echo "install debootstrap first (apt-get install -y debootstrap, or deploy/install.sh)" >&2
  exit 1; }

# The mirror this machine's apt uses (one-line or deb822 sources), else Debian's CDN.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources 2>/dev/null |
         awk '/^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }
              /^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/ && $i !~ /security/) { print $i; exit } }' |
         head -n1 || true)
mirror="${MINIK8S_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"

root=$(mktemp -d /var/tmp/minik8s-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $SUITE from $mirror (a few minutes the first time)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" \
  > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Smaller and reproducible enough: no apt lists, caches or logs in the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
       "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar --numeric-owner -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' - "$TAG" >/dev/null
echo "built $TAG"
