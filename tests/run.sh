#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine too: installs what is missing, starts
# dockerd where none runs (and stops it again afterwards), then runs pytest. Extra
# arguments go to pytest. Exits non-zero on any failure, "no tests ran" included.
set -uo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh || exit 1

started_dockerd=
if ! docker info >/dev/null 2>&1; then
  mkdir -p /tmp/minik8s-test
  dockerd >/tmp/minik8s-test/dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 /tmp/minik8s-test/dockerd.log; }
fi
stop_dockerd() {
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null
    wait "$started_dockerd" 2>/dev/null
  fi
}
trap stop_dockerd EXIT

python3 -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing the run"
fi
exit "$status"
