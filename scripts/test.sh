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
# And the client as it is shipped, linked static-pie (tests/tests/e2e.rs
# runs kubectl through it).
bash scripts/static-client.sh >/dev/null
# The example config is the documentation of every key: it must be valid
# (tests/tests/config_example.rs also checks that it names every key).
target/debug/akscredd check-config --config config.example.toml
cargo test --workspace
