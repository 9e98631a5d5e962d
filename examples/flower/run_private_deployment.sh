#!/usr/bin/env bash
# The private path on loopback: one SuperLink, six member SuperNodes in two domains and two
# basket-aggregator SuperNodes, each with its own provisioned directory; the app submitted
# with `flwr run` and `private=true`. Members seal their updates to their basket aggregator;
# the ServerApp relays ciphertexts and SecAgg+ messages and releases only the noised sum.
#
#   examples/flower/run_private_deployment.sh [rounds] [extra run config]
#
# Run it from an environment where hierfed[flower] and scikit-learn are installed.
# HIERFED_FLOWER_PORT (default 19400) and the ports after it (+11..+18: the SuperNodes' local
# APIs) must be free. HIERFED_FLOWER_RECORD=<path>: the ServerApp writes every message's
# payload there (and <path>.models.npz, <path>.reports.json). HIERFED_FLOWER_KEEP=<dir>: the
# provisioned directories are written there (and kept) instead of a temporary directory.
# Prints the ServerApp's log; exits non-zero if the run did not finish.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-3}
extra=${2:-}
port=${HIERFED_FLOWER_PORT:-19400}
record=${HIERFED_FLOWER_RECORD:-}
work=$(mktemp -d)
provisioned=${HIERFED_FLOWER_KEEP:-$work/provision}
export FLWR_HOME="$work/flwr-home" FLWR_TELEMETRY_ENABLED=0
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Provisioning (the operator, offline): keys, the signed registry and one plan per round.
(cd "$here" && python -m hierfed_flower.provision "$provisioned" --members 6 --domains 2 \
  --rounds "$rounds")

mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "loopback"

[superlink.loopback]
address = "127.0.0.1:$port"
insecure = true
TOML

flower-superlink --insecure --disable-runtime-dependency-installation \
  --host 127.0.0.1 --port "$port" > "$work/superlink.log" 2>&1 &
pids+=($!)
for i in 0 1 2 3 4 5; do
  flower-supernode --insecure --superlink "127.0.0.1:$port" --port $((port + 11 + i)) \
    --node-config "role=\"member\" partition-id=$i num-partitions=6 provision-dir=\"$provisioned/member-$i\"" \
    > "$work/member-$i.log" 2>&1 &
  pids+=($!)
done
for b in 0 1; do
  flower-supernode --insecure --superlink "127.0.0.1:$port" --port $((port + 17 + b)) \
    --node-config "role=\"basket\" provision-dir=\"$provisioned/basket-domain-$b\"" \
    > "$work/basket-$b.log" 2>&1 &
  pids+=($!)
done

for _ in $(seq 60); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.5
done
cd "$here"
config="private=true min-nodes=8 num-server-rounds=$rounds"
config="$config provision-dir=\"$provisioned/server\" record-to=\"$record\" $extra"
flwr run . loopback --stream --run-config "$config" 2>&1 | tee "$work/run.log"
if ! grep -q "final central accuracy" "$work/run.log"; then
  echo "run_private_deployment: the run did not finish; SuperLink log:" >&2
  tail -n 50 "$work/superlink.log" >&2
  for f in "$work"/basket-*.log; do echo "== $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
fi
