#!/usr/bin/env bash
# Builds the minik8s image (minik8s/minik8s:<version in pyproject.toml>) with no registry:
#   1. the base image: the local debootstrap one (build-base.sh, cached), or --base IMAGE;
#   2. wheels on the host: minik8s itself (`pip wheel`) and its dependencies (`pip download`
#      for the base image's Python and platform, kept in ~/.cache/minik8s/wheels, so later
#      builds need no network at all);
#   3. `docker build` with the classic builder, FROM a local tag: nothing is pulled, and the
#      build installs the wheels with `pip install --no-index`.
# Re-running it rebuilds only the layers whose input changed (minik8s's own wheel).
#   usage: build.sh [--base IMAGE] [--tag TAG]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
base=minik8s/debian:bookworm
version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
          "$repo/pyproject.toml")
tag="minik8s/minik8s:$version"
while (($#)); do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
docker info >/dev/null 2>&1 || { echo "the Docker engine is not running (start dockerd)" >&2; exit 1; }

if [ "$base" = minik8s/debian:bookworm ]; then bash "$here/build-base.sh" "$base"; fi
docker image inspect "$base" >/dev/null 2>&1 || {
  echo "base image $base is not on this machine (nothing is pulled; load or build it)" >&2
  exit 1; }

# The base's Python decides which wheels fit (Debian 12: CPython 3.11, glibc 2.36).
pyver=$(docker run --rm --pull never --network none --entrypoint python3 "$base" \
          -c 'import sys; print("%d.%d" % sys.version_info[:2])')
abi="cp${pyver/./}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/minik8s/wheels/$abi"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$cache" "$ctx/wheels/deps" "$ctx/wheels/project"
cp "$here/Dockerfile" "$here/compose_entry.py" "$ctx/"

python3 -m pip wheel -q --disable-pip-version-check --no-deps \
  -w "$ctx/wheels/project" "$repo" >/dev/null
project_wheel=$(ls "$ctx"/wheels/project/*.whl)
pick=(--disable-pip-version-check -q --only-binary=:all: --python-version "$pyver"
      --implementation cp --abi "$abi"
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64
      --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64
      --platform manylinux1_x86_64 --platform linux_x86_64)
# From the cache alone when it has everything; otherwise fill it from the package index.
if ! python3 -m pip download "${pick[@]}" --no-index --find-links "$cache" \
       -d "$ctx/wheels/deps" "$project_wheel" >/dev/null 2>&1; then
  echo "fetching wheels for CPython $pyver into $cache"
  python3 -m pip download "${pick[@]}" -d "$cache" "$project_wheel" \
    2> >(grep -v '^WARNING: Location' >&2)
  rm -f "$cache"/minik8s-*.whl
  python3 -m pip download "${pick[@]}" --no-index --find-links "$cache" \
    -d "$ctx/wheels/deps" "$project_wheel" >/dev/null
fi
rm -f "$ctx"/wheels/deps/minik8s-*.whl

# The classic builder uses a local FROM image as it is (BuildKit would ask the registry for
# its metadata first); --pull=false never refreshes it.
if ! out=$(DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BASE=$base" -t "$tag" \
             "$ctx" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "built $tag (base $base, CPython $pyver)"
# Every pod's infra container runs the local busybox image.
bash "$here/build-busybox.sh"
