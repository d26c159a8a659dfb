#!/usr/bin/env bash
# Installs seaopt's build and test dependencies from Debian packages (run as root, or with sudo).
# CUDA is optional: when nvcc is installed (e.g. /usr/local/cuda), the CUDA backend is built too.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config \
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libpcre2-dev libpng-dev zlib1g-dev \
  libgtest-dev googletest >/dev/null
echo "seaopt: dependencies installed"
