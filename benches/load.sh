#!/usr/bin/env bash
# The HTTP load benchmark of DESIGN §11: a bare axum + sqlx server and the same work behind
# mt-paas's whole guard (identify → auth → subscription/kill switch → rate limit → TenantDb),
# on this machine, in one run, with wrk -t2 -c32. Prints requests/s and p99 side by side.
#
#   bash benches/load.sh            # 10 s per run
#   DURATION=30s bash benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
cargo build -q --release -p loadbench
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # mode port
  ./target/release/loadbench "$1" "$work/$1" "$2" > "$work/$1.log" 2>&1 &
  for _ in $(seq 1 300); do grep -q ready "$work/$1.log" 2>/dev/null && return; sleep 0.2; done
  echo "$1 did not start"; cat "$work/$1.log"; exit 1
}

cat > "$work/full.lua" <<'LUA'
local lines = {}
for line in io.lines(os.getenv("TOKENS")) do
  local tenant, token = line:match("(%S+) (%S+)")
  lines[#lines + 1] = { tenant = tenant, token = token }
end
local n = 0
request = function()
  n = n + 1
  local l = lines[(n % #lines) + 1]
  return wrk.format("GET", nil, { ["X-Tenant-ID"] = l.tenant, ["Authorization"] = "Bearer " .. l.token })
end
LUA
cat > "$work/unknown.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", nil, { ["X-Tenant-ID"] = "unknown" .. (n % 100) })
end
LUA

measure() { # label url [script]
  local out
  if [ -n "${3:-}" ]; then out=$(wrk -t2 -c32 -d"$DURATION" --latency -s "$3" "$2"); else out=$(wrk -t2 -c32 -d"$DURATION" --latency "$2"); fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  printf '%-44s %12s req/s   p99 %8s\n' "$1" "$rps" "$p99"
  echo "$out" | grep -E "Non-2xx|Socket errors" || true
}

start bare 18081
start full 18082
export TOKENS="$work/full/tokens.txt"
echo "wrk -t2 -c32 -d$DURATION on $(nproc) cores"
# Both servers get the same requests from the same wrk script (the bare one ignores the
# tenant and token headers), so wrk's own cost is the same on both sides of the comparison.
measure "bare axum + sqlx, GET /courses (10 rows)" http://127.0.0.1:18081/courses "$work/full.lua"
measure "mt-paas full guard, 100 tenants rotating" http://127.0.0.1:18082/courses "$work/full.lua"
measure "bare axum 404 (no route)" http://127.0.0.1:18081/nothing "$work/unknown.lua"
measure "mt-paas unknown tenant → 404 (cached)" http://127.0.0.1:18082/courses "$work/unknown.lua"
for mode in bare full; do
  pid=$(pgrep -f "loadbench $mode" | head -n1)
  echo "$mode RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
done
