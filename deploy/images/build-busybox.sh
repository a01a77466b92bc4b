#!/usr/bin/env bash
# Builds the test image minik8s/busybox:1.35 with no registry: a root filesystem holding
# Debian's static busybox (sh, httpd, nc, sleep, wget, ...), imported with `docker import`.
# Idempotent: does nothing when the image is already present.
set -euo pipefail
TAG="${1:-minik8s/busybox:1.35}"
if docker image inspect "$TAG" >/dev/null 2>&1; then exit 0; fi
[ -x /bin/busybox ] || { echo "install busybox-static first (apt-get install -y busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var/www,home}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/home:/bin/false' >> "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["sh"]' - "$TAG" >/dev/null
echo "built $TAG"
