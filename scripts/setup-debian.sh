#!/usr/bin/env bash
# Installs grove's build and test dependencies from Debian packages.
# Idempotent and quiet when everything is already there; needs root (or sudo)
# only when something is missing. Nothing is fetched from anywhere but apt.
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libboost-dev libtbb-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  valgrind
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
