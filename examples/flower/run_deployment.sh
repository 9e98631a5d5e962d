#!/usr/bin/env bash
# A deployment run on loopback: one SuperLink, four SuperNodes (two "hospital", two "bank"),
# the example app submitted with `flwr run`; everything over 127.0.0.1, no network.
#
#   examples/flower/run_deployment.sh [rounds]
#
# Run it from an environment where hierfed[flower] and scikit-learn are installed (their
# `flower-superlink`, `flower-supernode` and `flwr` on PATH). Apps' dependencies are not
# installed at run time (--disable-runtime-dependency-installation): they come from this
# environment. HIERFED_FLOWER_PORT (default 19300) and the four ports after it (+11..+14,
# the SuperNodes' local APIs) must be free. Prints the ServerApp's log; exits non-zero if the
# run did not finish.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-2}
port=${HIERFED_FLOWER_PORT:-19300}
work=$(mktemp -d)
export FLWR_HOME="$work/flwr-home" FLWR_TELEMETRY_ENABLED=0
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The Flower configuration: a SuperLink connection named "loopback".
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
for i in 0 1 2 3; do
  if [ $((i % 2)) -eq 0 ]; then domain=hospital; else domain=bank; fi
  flower-supernode --insecure --superlink "127.0.0.1:$port" --port $((port + 11 + i)) \
    --node-config "partition-id=$i num-partitions=4 domain=\"$domain\"" \
    > "$work/supernode-$i.log" 2>&1 &
  pids+=($!)
done

# Submit the app once the SuperLink answers; the strategy waits for the four SuperNodes.
for _ in $(seq 60); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.5
done
cd "$here"
flwr run . loopback --stream --run-config "min-nodes=4 num-server-rounds=$rounds" \
  2>&1 | tee "$work/run.log"
if ! grep -q "final central accuracy" "$work/run.log"; then
  echo "run_deployment: the run did not finish; SuperLink log:" >&2
  tail -n 50 "$work/superlink.log" >&2
  exit 1
fi
