#!/usr/bin/env bash
# Builds the test image minik8s/busybox:1.35 with no registry: a root filesystem holding
# Debian's static busybox (sh, httpd, nc, sleep, wget, nslookup, ...), imported with
# `docker import`. Idempotent: does nothing when the image is present and was built by this
# revision of the script (the minik8s.image.revision label); an older build is replaced.
#
# Debian's busybox-static (before 1.36.1-5) is built without FEATURE_WGET_TIMEOUT, and its
# wget then crashes with SIGSEGV on `-T` (it writes the value through a NULL pointer) before
# it resolves or connects anything. /bin/wget is therefore a small wrapper that takes `-T N`
# / `--timeout=N` off the command line and runs busybox's wget under busybox's `timeout`
# instead (a limit on the whole transfer rather than per read). Busybox's sh runs its own
# applets before looking at PATH, so a wrapper alone would be bypassed by `sh -c "wget ..."`:
# the image's copy of busybox has its wget applet renamed to `wgeT` (same length, same
# sort position in the applet name table, which busybox searches in order), so `wget` is found
# in PATH as the wrapper. Name resolution itself works: static glibc has the files and dns NSS
# sources built in; /etc/nsswitch.conf says `hosts: files dns` so /etc/hosts (the pod's own
# names) is read before the cluster DNS.
set -euo pipefail
TAG="${1:-minik8s/busybox:1.35}"
REVISION=3
have=$(docker image inspect -f '{{index .Config.Labels "minik8s.image.revision"}}' "$TAG" \
  2>/dev/null || true)
if [ "$have" = "$REVISION" ]; then exit 0; fi
[ -x /bin/busybox ] || { echo "install busybox-static first (apt-get install -y busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var/www,home}
chmod 1777 "$root/tmp"
python3 - /bin/busybox "$root/bin/busybox" <<'PATCH'
import sys
data = open(sys.argv[1], "rb").read()
old, new = b"\0wc\0wget\0which\0", b"\0wc\0wgeT\0which\0"
if data.count(old) != 1:
    sys.exit("build-busybox.sh: this busybox's applet table is not the one expected")
open(sys.argv[2], "wb").write(data.replace(old, new))
PATCH
chmod 755 "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
done
rm -f "$root/bin/wgeT"
cat > "$root/bin/wget" <<'WGET'
#!/bin/sh
# busybox wget (renamed wgeT) with -T done by `timeout`: this busybox build crashes on -T.
t=
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case $a in
    -T|--timeout)
      [ "$n" -gt 0 ] || { echo "wget: option requires an argument -- T" >&2; exit 1; }
      t=$1; shift; n=$((n - 1)) ;;
    -T*) t=${a#-T} ;;
    --timeout=*) t=${a#--timeout=} ;;
    --) set -- "$@" "$a"
        while [ "$n" -gt 0 ]; do set -- "$@" "$1"; shift; n=$((n - 1)); done ;;
    *) set -- "$@" "$a" ;;
  esac
done
case $t in
  '') exec /bin/busybox wgeT "$@" ;;
  *[!0-9]*) echo "wget: invalid number '$t'" >&2; exit 1 ;;
esac
[ "$t" -gt 0 ] || exec /bin/busybox wgeT "$@"
exec /bin/busybox timeout "$t" /bin/busybox wgeT "$@"
WGET
chmod 755 "$root/bin/wget"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/home:/bin/false' >> "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["sh"]' -c "LABEL minik8s.image.revision=$REVISION" - "$TAG" >/dev/null
echo "built $TAG"
