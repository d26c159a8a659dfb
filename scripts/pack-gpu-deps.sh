#!/usr/bin/env bash
# Copies seaopt's Debian build dependencies (headers, libraries, CMake package files) into
# .carry/deps/usr, mirroring /usr, for a GPU machine that has CUDA and CMake but cannot install
# packages. Use there with:  cmake -DCMAKE_PREFIX_PATH=$PWD/.carry/deps/usr ...
# (.carry/ is git-ignored.)
set -euo pipefail
cd "$(dirname "$0")/.."
# Run it where scripts/install-deps.sh ran (Debian 12), not on the GPU machine itself.
if ! dpkg -s libspdlog-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libgtest-dev >/dev/null 2>&1; then
  echo "pack-gpu-deps.sh: run scripts/install-deps.sh first, on the Debian machine" >&2
  exit 1
fi
dest=.carry/deps/usr
rm -rf "$dest"
mkdir -p "$dest"
copy() {  # copy /usr/<path> to $dest/<path>, keeping the relative layout
  for p in "$@"; do
    mkdir -p "$dest/$(dirname "$p")"
    cp -a "/usr/$p" "$dest/$p"
  done
}
arch=lib/x86_64-linux-gnu
copy include/nlohmann share/cmake/nlohmann_json
copy include/CLI share/cmake/CLI11
copy include/spdlog $arch/cmake/spdlog $arch/libspdlog.so $arch/libspdlog.so.1.10 $arch/libspdlog.so.1.10.0
copy include/fmt $arch/cmake/fmt $arch/libfmt.so $arch/libfmt.so.9 $arch/libfmt.so.9.1.0
copy include/gtest include/gmock $arch/cmake/GTest $arch/libgtest.a $arch/libgtest_main.a $arch/libgmock.a $arch/libgmock_main.a
copy include/pcre2.h $arch/libpcre2-8.a
du -sh "$dest"
