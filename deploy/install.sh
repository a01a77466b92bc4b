#!/usr/bin/env bash
# Installs what minik8s needs on a Debian machine: the Debian packages (etcd, Docker engine,
# busybox for test images, iptables, iproute2) and minik8s itself with its test extra.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have etcd || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have dockerd || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
have iptables || need+=(iptables)
have ip || need+=(iproute2)
have dig || need+=(bind9-dnsutils)  # tests only: dig checks the cluster DNS's wire format
have wrk || need+=(wrk)  # bench/service.py only: the HTTP load generator
have docker-compose || need+=(docker-compose)  # deploy/compose.yaml (Debian's v1.29.2)
have debootstrap || need+=(debootstrap)  # the image base, deploy/images/build-base.sh
have systemd-analyze || need+=(systemd)  # tests: `systemd-analyze verify` of deploy/systemd
if ((${#need[@]})); then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
