#!/usr/bin/env bash
# A long-running emulator and akscredd to profile by hand (perf, valgrind,
# strace), as BENCHMARKS.md's analysis was made:
#
#   bash bench/env.sh DIR [CLUSTERS] [AKSCREDD]
#
# starts `akscred-emulator --scenario many:CLUSTERS` (default 1) and
# AKSCREDD (default target/release/akscredd; for symbols build
# target/bench-prof, see bench/ANALYSIS.md) with a config for every cluster,
# waits until every cluster is ready, and prints the socket, the pids and
# the command that stops both. Nothing is stopped when this script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${1:?usage: bash bench/env.sh DIR [CLUSTERS] [AKSCREDD]}
clusters=${2:-1}
akscredd=${3:-$root/target/release/akscredd}
bin="$root/target/release"
[ -x "$bin/akscred-emulator" ] || { echo "env.sh: build first: cargo build --release --workspace --bins" >&2; exit 1; }

mkdir -p "$dir"; chmod 700 "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/emulator" "$dir/akscred.sock"
"$bin/akscred-emulator" --dir "$dir/emulator" --scenario "many:$clusters" >"$dir/emulator.out" 2>"$dir/emulator.log" &
emu=$!
for _ in $(seq 100); do grep -q '^READY' "$dir/emulator.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$dir/emulator.out" || { echo "env.sh: the emulator did not start: $(cat "$dir/emulator.log")" >&2; kill "$emu"; exit 1; }

python3 - "$dir" <<'PY'
import json, os, sys
d = sys.argv[1]
e = json.load(open(os.path.join(d, "emulator", "emulator.json")))
user = next(u for u in e["users"] if u.get("password"))
pw = os.path.join(d, "password")
with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    f.write(user["password"] + "\n")
clusters = "".join(f'''
[clusters.{n}]
identity = "alice"
subscription = "{e["subscription"]}"
resource_group = "{e["resource_group"]}"
name = "{n}"
''' for n in sorted(e["clusters"]))
open(os.path.join(d, "config.toml"), "w").write(f'''[daemon]
socket = "{d}/akscred.sock"
ca_file = "{d}/emulator/ca.pem"

[clouds.emulator]
login_endpoint = "{e["login_url"]}"
arm_endpoint = "{e["arm_url"]}"
arm_resource = "https://management.core.windows.net/"

[identities.alice]
cloud = "emulator"
tenant = "{e["tenant_domain"]}"
username = "{user["upn"]}"
password = {{ file = "{pw}" }}
{clusters}''')
PY

"$akscredd" --config "$dir/config.toml" 2>"$dir/akscredd.log" &
daemon=$!
export AKSCRED_SOCKET="$dir/akscred.sock"
for _ in $(seq 600); do
  if "$bin/akscred" status >/dev/null 2>&1; then break; fi
  sleep 0.1
done
"$bin/akscred" status >/dev/null || { echo "env.sh: not every cluster is ready; see $dir/akscredd.log" >&2; }
echo "socket:   $AKSCRED_SOCKET"
echo "akscredd: pid $daemon, emulator: pid $emu"
echo "load:     $bin/akscred-bench load $AKSCRED_SOCKET aks-000 64 [close] [SECS]"
echo "stop:     kill $daemon $emu"
