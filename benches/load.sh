#!/usr/bin/env bash
# The HTTP load benchmark of DESIGN §11: a bare axum + sqlx server and the same work behind
# mt-paas's whole guard (identify → auth → subscription/kill switch → rate limit → TenantDb),
# on this machine, in one run, with wrk -t2 -c32. Prints requests/s and p99 side by side.
#
#   bash benches/load.sh                       # 3 rounds of 5 s per case
#   ROUNDS=5 DURATION=10s bash benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-5s}"
ROUNDS="${ROUNDS:-3}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
cargo build -q --release -p loadbench
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # name mode port
  ./target/release/loadbench "$2" "$work/$1" "$3" > "$work/$1.log" 2>&1 &
  echo $! > "$work/$1.pid"
  for _ in $(seq 1 600); do grep -q ready "$work/$1.log" 2>/dev/null && return; sleep 0.2; done
  echo "$1 did not start"; cat "$work/$1.log"; exit 1
}
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$(cat "$work/$1.pid")/status"; }

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

run() { # url script → "req/s p99"
  wrk -t2 -c32 -d"$DURATION" --latency -s "$2" "$1" |
    awk '/Requests\/sec/ {rps=$2} $1 == "99%" {p99=$2} END {print rps, p99}'
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

start market market 18080
export LOADBENCH_MARKET=http://127.0.0.1:18080
start bare bare 18081
start full full 18082
export TOKENS="$work/full/tokens.txt"
echo "wrk -t2 -c32, $ROUNDS interleaved rounds of $DURATION on $(nproc) cores; medians"
# Both servers get the same requests from the same wrk script (the bare one ignores the
# tenant and token headers), so wrk's own cost is the same on both sides of the comparison.
# Rounds alternate between the servers so that this machine's drift hits both alike.
cases=(
  "bare|http://127.0.0.1:18081/courses|$work/full.lua"
  "full|http://127.0.0.1:18082/courses|$work/full.lua"
  "bare404|http://127.0.0.1:18081/nothing|$work/unknown.lua"
  "unknown|http://127.0.0.1:18082/courses|$work/unknown.lua"
)
for round in $(seq 1 "$ROUNDS"); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name url script <<< "$c"
    run "$url" "$script" >> "$work/$name.txt"
  done
done
report() { # name label
  local rps p99
  rps=$(awk '{print $1}' "$work/$1.txt" | median)
  p99=$(awk '{print $2}' "$work/$1.txt" | sed 's/ms$//' | awk '/us$/ {sub("us",""); print $1/1000; next} {print}' | median)
  printf '%-44s %10.0f req/s   p99 %5.2f ms\n' "$2" "$rps" "$p99"
  echo "$rps" > "$work/$1.rps"
}
report bare "bare axum + sqlx, GET /courses (10 rows)"
report full "mt-paas full guard, 100 tenants rotating"
report bare404 "bare axum 404 (no route)"
report unknown "mt-paas unknown tenant → 404 (cached)"
awk -v f="$(cat "$work/full.rps")" -v b="$(cat "$work/bare.rps")" \
  'BEGIN {printf "full guard / bare:          %5.1f %%\n", 100 * f / b}'
awk -v f="$(cat "$work/unknown.rps")" -v b="$(cat "$work/bare404.rps")" \
  'BEGIN {printf "unknown tenant / bare 404:  %5.1f %%\n", 100 * f / b}'
echo "RSS after the load: bare $(rss bare), mt-paas with 100 tenants $(rss full) (the market runs apart)"

# Memory with 1,000 active tenants (DESIGN §11), with the default connection budget (50):
# every tenant served for $DURATION, then the RSS. In SQLite DATABASE_PER_TENANT mode each
# open connection is a file and a thread, and 1,000 tenants rotating through 50 connections
# reopen one on most requests; in Postgres SCHEMA_PER_TENANT mode the connections are shared.
for mode in sqlite schema; do
  LOADBENCH_MODE=$mode LOADBENCH_TENANTS=1000 LOADBENCH_BUDGET=50 start "t1000$mode" full 18083
  rps=$(TOKENS="$work/t1000$mode/tokens.txt" run http://127.0.0.1:18083/courses "$work/full.lua" | awk '{print $1}')
  echo "1,000 active tenants, $mode: RSS $(rss "t1000$mode"), $rps req/s rotating over all"
  kill "$(cat "$work/t1000$mode.pid")"; wait "$(cat "$work/t1000$mode.pid")" 2>/dev/null || true
done
