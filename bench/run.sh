#!/usr/bin/env bash
# The benchmark suite: builds everything in release mode, then measures
# akscred and akscredd against the process-start floor, a trivial Rust
# binary, gke-gcloud-auth-plugin's cache hit and the in-process Azure
# emulator, and prints a Markdown report (machine, versions, load, every
# figure, budgets). The report goes to stdout and to BENCHMARKS.md.
#
#   bash bench/run.sh                 # the full suite (about 5 minutes)
#   bash bench/run.sh --only 1,3      # some figures (see bench/src/main.rs)
#   BENCH_OUT=/tmp/b.md bash bench/run.sh --runs 200
#
# Benchmarks report; they do not assert. Not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${BENCH_OUT:-$root/BENCHMARKS.md}

echo "==> cargo build --release --workspace --bins" >&2
cargo build --release --workspace --bins >&2
bin="$root/target/release"
# The client as it is shipped (scripts/release.sh): static-pie. The plain
# `cargo build` one, dynamically linked, is timed next to it.
echo "==> akscred as shipped: bash scripts/static-client.sh --release" >&2
shipped=$(bash scripts/static-client.sh --release)
# The trivial Rust binary (no dependencies) linked the same way, as the
# floor for a static client.
const_static="$root/target/static/bench-const-credential"
rustc --edition 2024 -C opt-level=3 -C panic=abort -C strip=symbols \
  -C target-feature=+crt-static bench/src/bin/const_credential.rs -o "$const_static" >&2

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

{
  echo "# akscred benchmarks"
  echo
  echo "Produced by \`bash bench/run.sh${*:+ $*}\` on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Benchmarks report, they do not assert: budgets are checked by reading the"
  echo "table at the end. Every figure carries the 1-minute load average"
  echo "(start→end of that measurement): this is a shared 2-core machine. The"
  echo "benchmark itself adds about 1 (there is always one of its processes"
  echo "running); more than ~1.5 means someone else was using a core."
  echo
  echo "## Machine and versions"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| kernel | $(uname -srm) |"
  echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores |"
  echo "| memory | $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) |"
  echo "| load at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| rustc | $(rustc --version) |"
  echo "| akscred | $("$bin/akscred" --version 2>/dev/null | head -1) |"
  echo "| akscredd | $("$bin/akscredd" --version 2>/dev/null | head -1) |"
  echo "| commit | $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)') |"
  echo "| binaries | akscred as shipped (static-pie) $(stat -c %s "$shipped") B, dynamically linked $(stat -c %s "$bin/akscred") B, akscredd $(stat -c %s "$bin/akscredd") B, bench-const-credential $(stat -c %s "$bin/bench-const-credential") B (release: LTO, 1 CGU, panic=abort, stripped) |"
  if command -v gke-gcloud-auth-plugin >/dev/null; then
    echo "| gke-gcloud-auth-plugin | $(gke-gcloud-auth-plugin --version 2>&1 | head -1), $(stat -L -c %s "$(command -v gke-gcloud-auth-plugin)") B |"
  fi
  echo "| /bin/true | $(/bin/true --version 2>/dev/null | head -1) |"
} | tee "$tmp"

"$bin/akscred-bench" --client "$shipped" --extra-client "$bin/akscred" --const-static "$const_static" "$@" | tee -a "$tmp"
status=${PIPESTATUS[0]}

{
  echo
  echo "Load at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  cat bench/ANALYSIS.md
} | tee -a "$tmp"

cp "$tmp" "$out"
echo "==> report written to $out" >&2
exit "$status"
