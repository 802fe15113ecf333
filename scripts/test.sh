#!/usr/bin/env bash
# The one command that checks everything: formatting, lints, the unit tests,
# the emulator's fidelity against MSAL for Python, and the end-to-end tests
# that run the real akscredd, akscred and kubectl. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the binaries of other packages: build them first.
cargo build --workspace --bins
cargo test --workspace
