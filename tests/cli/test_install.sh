#!/usr/bin/env bash
# usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
p=$(mktemp -d)
trap 'rm -rf "$p"' EXIT
cmake --install "$build" --prefix "$p/prefix" >/dev/null
export PKG_CONFIG_PATH="$p/prefix/lib/pkgconfig"
pkg-config --exists lmio
cc -std=c11 "$src/examples/gpt2_save_load.c" $(pkg-config --cflags --libs lmio) -lm -Wl,-rpath,"$p/prefix/lib" -o "$p/example"
"$p/example" "$p/model" | grep -q "^match:"
test -x "$p/prefix/bin/lmio"
"$p/prefix/bin/lmio" version | grep -q "^lmio "
echo "1 passed, 0 failed"
