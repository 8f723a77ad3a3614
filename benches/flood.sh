#!/usr/bin/env bash
# The signature flood of the hardening issue: four clients send control commands whose
# webhook-signature header is "v1, " 95,000 times (371 KiB, under hyper's header limit) with a
# 60 KiB body, while a probe times /healthz. Before bounded verification each such request was
# gigabytes of SHA-256; now it is refused after the header-size check, in microseconds.
#
#   bash benches/flood.sh                 # 10 s of flood
#   FLOOD_SECONDS=30 bash benches/flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p loadbench
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18791
./target/release/loadbench flood-server "$work/server" "$port" > "$work/server.log" 2>&1 &
for _ in $(seq 1 300); do grep -q ready "$work/server.log" 2>/dev/null && break; sleep 0.2; done
grep -q ready "$work/server.log" || { cat "$work/server.log"; exit 1; }
./target/release/loadbench flood "$work/client" "$port"
