#!/usr/bin/env bash
# Builds akscred, the exec plugin, linked static-pie, and prints its
# absolute path.
#
#   bash scripts/static-client.sh            # target/static/debug/akscred
#   bash scripts/static-client.sh --release  # target/static/release/akscred
#
# Why static: kubectl starts akscred once per command, and a dynamically
# linked Rust binary spends about 0.3 ms of its ~1.8 ms in ld.so, opening
# and relocating libc and libgcc_s (bench/ANALYSIS.md, figure 1). Static-pie
# starts with no loader at all. It is safe for akscred: it calls no NSS
# function (no getpwnam, no getaddrinfo), so static glibc never has to dlopen
# anything. akscredd stays dynamic for exactly that reason (it resolves host
# names), which is why the flag cannot go in .cargo/config.toml: `cargo rustc`
# gives it to this one binary, in its own target directory so that the
# workspace's ordinary build is not invalidated each time.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
if [ "${1:-}" = "--release" ]; then
  profile=release
  args=(--release)
fi
target="${CARGO_TARGET_DIR:-target}/static"
cargo rustc "${args[@]}" --quiet -p akscred --bin akscred --target-dir "$target" \
  -- -C target-feature=+crt-static >&2
echo "$(cd "$target/$profile" && pwd)/akscred"
