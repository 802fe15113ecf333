#!/usr/bin/env bash
# Builds what gets installed, into target/dist/: akscredd (release) and
# akscred (release, static-pie: see scripts/static-client.sh).
#
#   bash scripts/release.sh && install -m 755 target/dist/* ~/.local/bin/
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p akscredd --bin akscredd
client=$(bash scripts/static-client.sh --release)
mkdir -p "$target/dist"
install -m 755 "$target/release/akscredd" "$client" "$target/dist/"
ls -l "$target/dist/"
