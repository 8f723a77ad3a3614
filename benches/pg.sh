#!/usr/bin/env bash
# The Postgres load benchmark (DESIGN §11): mt-paas on a schema and on a database per tenant,
# each case paired in the same run with a hand-written axum + sqlx server doing the same SQL
# on the same Postgres (loadbench pg-bare: schema-qualified names on one pool; for databases,
# one pool per database with the same total connections). wrk -t2 -c32, ROUNDS interleaved
# rounds of DURATION per case; prints the medians: req/s, p50, p99 and the ratio to bare.
#
#   bash benches/pg.sh                          # 3 rounds of 2 s per case, about 5 minutes
#   ROUNDS=5 DURATION=5s bash benches/pg.sh
#   MODES=schema bash benches/pg.sh             # one mode only
#   SCENARIOS="uniform-host zipf-host" bash benches/pg.sh   # some scenarios only
#
# Scenarios per mode: one tenant; 100 tenants rotating uniformly (by Host, and by header);
# Zipf(1) over every tenant (1,000 schemas; DB_TENANTS, 100, databases); an unknown tenant
# (404). Stacks:
# bare, mt-paas minimal (identification + TenantDb), mt-paas full (JWT, the market's
# subscription check, kill switch, rate limit that never bites, usage, metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-2s}"
ROUNDS="${ROUNDS:-3}"
MODES="${MODES:-schema database}"
# Connections of each server: BUDGET (10) for the schemas (one shared database). For the
# databases DB_BUDGET: by default as many as this Postgres's max_connections lets the three
# servers hold together, with room for the bare server's in-flight overshoot (an evicted
# pool's connection closes after its last query) — at the stock max_connections of 100 that
# is 18 connections for 100 databases, a budget smaller than the tenant count, so eviction is
# part of what is measured. A DB_BUDGET that does not fit makes idle connections close after
# a second, with a pause before each case, so that the servers measured in turn never hold
# more than one budget together (slower: about 2 minutes more).
BUDGET="${BUDGET:-10}"
DB_TENANTS="${DB_TENANTS:-100}"
max_conn=$(psql -h 127.0.0.1 -U postgres -d postgres -Atqc "SHOW max_connections")
fit=$(((max_conn - 46) / 3))
DB_BUDGET="${DB_BUDGET:-$((DB_TENANTS < fit ? DB_TENANTS : fit))}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
cargo build -q --release -p loadbench
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # name port [VAR=value...] -- loadbench-mode
  local name=$1 port=$2
  shift 2
  if ss -ltn "sport = :$port" | grep -q LISTEN; then
    echo "port $port is taken (a server of an earlier run still up?)"; exit 1
  fi
  env "$@" ./target/release/loadbench "${LB_MODE}" "$work/$name" "$port" > "$work/$name.log" 2>&1 &
  echo $! > "$work/$name.pid"
  for _ in $(seq 1 1500); do
    grep -q ready "$work/$name.log" 2>/dev/null && return
    kill -0 "$(cat "$work/$name.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "$name did not start"; cat "$work/$name.log"; exit 1
}
stop() { kill "$(cat "$work/$1.pid")" 2>/dev/null || true; wait "$(cat "$work/$1.pid")" 2>/dev/null || true; }
rss() { # a server's resident memory, or why it is gone
  local status="/proc/$(cat "$work/$1.pid")/status"
  if [ -r "$status" ]; then awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "$status"
  else printf 'gone (its log: %s)' "$(tail -n 3 "$work/$1.log" | tr '\n' ' ')"; fi
}

# One script for every case. PATTERN: one | uniform | zipf | unknown; COUNT tenants of
# TOKENS (lines "tenant token"); IDENT: host | header; a token is sent when it is not "-".
cat > "$work/pg.lua" <<'LUA'
local pattern = os.getenv("PATTERN")
local count = tonumber(os.getenv("COUNT"))
local ident = os.getenv("IDENT")
local tenants, tokens = {}, {}
for line in io.lines(os.getenv("TOKENS")) do
  local t, k = line:match("(%S+) (%S+)")
  tenants[#tenants + 1] = t
  tokens[#tokens + 1] = k
end
count = math.min(count, #tenants)
-- Zipf(1) over `count`: the cumulative weights 1/k, sampled by bisection.
local cdf, sum = {}, 0
for k = 1, count do sum = sum + 1 / k; cdf[k] = sum end
local function zipf()
  local u, lo, hi = math.random() * sum, 1, count
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end
local n = 0
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init() math.randomseed(seed or 1) end
request = function()
  n = n + 1
  local i
  if pattern == "one" then i = 1
  elseif pattern == "uniform" then i = (n % count) + 1
  elseif pattern == "zipf" then i = zipf()
  end
  local headers = {}
  local tenant = i and tenants[i] or ("unknown" .. (n % 100))
  if ident == "header" then headers["X-Tenant-ID"] = tenant
  else headers["Host"] = tenant .. ".example.test" end
  if i and tokens[i] ~= "-" then headers["Authorization"] = "Bearer " .. tokens[i] end
  return wrk.format("GET", "/courses", headers)
end
LUA

run() { # port pattern count ident tokens → "req/s p50 p99" (ms)
  sleep "${settle:-0}"
  local out
  out=$(PATTERN=$2 COUNT=$3 IDENT=$4 TOKENS=$5 wrk -t2 -c32 -d"$DURATION" --latency -s "$work/pg.lua" "http://127.0.0.1:$1")
  # Only the unknown tenant is answered with an error; anywhere else one spoils the figure.
  if [ "$2" != unknown ] && grep -qE 'Non-2xx|Socket errors' <<< "$out"; then
    echo "port $1, $2 $4: $(grep -E 'Non-2xx|Socket errors' <<< "$out" | tr -s ' ')" >&2
  fi
  awk 'function ms(v) { if (v ~ /us$/) { sub("us", "", v); return v / 1000 } if (v ~ /ms$/) { sub("ms", "", v); return v + 0 } if (v ~ /s$/) { sub("s", "", v); return v * 1000 } return v }
       /Requests\/sec/ {rps=$2} $1 == "50%" {p50=ms($2)} $1 == "99%" {p99=ms($2)} END {print rps, p50, p99}' <<< "$out"
}
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

LB_MODE=market start market 18180
export LOADBENCH_MARKET=http://127.0.0.1:18180
printf 'wrk -t2 -c32, %s interleaved rounds of %s per case on %s cores; medians\n' \
  "$ROUNDS" "$DURATION" "$(nproc)"
printf '%-9s %-28s %-8s %10s %8s %8s %8s %8s\n' mode scenario stack req/s p50_ms p99_ms ratio p99x
for mode in $MODES; do
  if [ "$mode" = schema ]; then
    tenants=1000 budget=$BUDGET idle=300 settle=0
  elif [ "$DB_BUDGET" -le "$fit" ]; then
    tenants=$DB_TENANTS budget=$DB_BUDGET idle=300 settle=0
  else
    tenants=$DB_TENANTS budget=$DB_BUDGET idle=1 settle=2
  fi
  central="$work/central-$mode"
  # Connections one tenant may hold (mt-paas's pool_size_per_tenant; for the databases also
  # the bare server's pool per database): 4 on the schemas, whose bare pool is shared; the
  # budget spread over the tenant databases, between 1 and 4.
  per_tenant=4
  if [ "$mode" = database ]; then
    per_tenant=$((budget / tenants)); per_tenant=$((per_tenant < 1 ? 1 : per_tenant > 4 ? 4 : per_tenant))
  fi
  echo "$mode: $tenants tenants, $budget connections per server, $per_tenant per tenant (Postgres max_connections $max_conn)"
  common=(LOADBENCH_MODE="$mode" LOADBENCH_TENANTS="$tenants" LOADBENCH_IDLE="$idle" LOADBENCH_PER_TENANT="$per_tenant")
  LB_MODE=pg-bare start "bare-$mode" 18181 "${common[@]}" LOADBENCH_POOL="$budget"
  LB_MODE=full start "full-$mode" 18182 "${common[@]}" LOADBENCH_STACK=full \
    LOADBENCH_BUDGET="$budget" LOADBENCH_CENTRAL="$central"
  LB_MODE=full start "min-$mode" 18183 "${common[@]}" LOADBENCH_STACK=minimal \
    LOADBENCH_BUDGET="$budget" LOADBENCH_CENTRAL="$central"
  # The connections of the three servers, sampled every 0.2 s while the mode runs.
  count_sql="SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'mtp_lb%' OR datname = 'mtp_loadbench'"
  while :; do psql -h 127.0.0.1 -U postgres -d postgres -Atqc "$count_sql" 2>/dev/null; sleep 0.2; done > "$work/conns-$mode.txt" &
  sampler=$!
  tokens="$work/full-$mode/tokens.txt"
  anon="$work/min-$mode/tokens.txt"
  scenarios=(
    "one tenant (Host)|one|1|host"
    "100 uniform (Host)|uniform|100|host"
    "100 uniform (header)|uniform|100|header"
    "$tenants Zipf(1) (Host)|zipf|$tenants|host"
    "unknown tenant -> 404|unknown|1|host"
  )
  if [ -n "${SCENARIOS:-}" ]; then # e.g. SCENARIOS="uniform-host zipf-host"
    kept=()
    for s in "${scenarios[@]}"; do
      IFS='|' read -r _ pattern _ ident <<< "$s"
      [[ " $SCENARIOS " == *" $pattern-$ident "* ]] && kept+=("$s")
    done
    scenarios=("${kept[@]}")
  fi
  # One warm-up pass (discarded): connections opened, caches and statement caches filled.
  for s in "${scenarios[@]}"; do
    IFS='|' read -r label pattern count ident <<< "$s"
    for port in 18181 18183; do DURATION=1s run "$port" "$pattern" "$count" "$ident" "$anon" > /dev/null; done
    DURATION=1s run 18182 "$pattern" "$count" "$ident" "$tokens" > /dev/null
  done
  for round in $(seq 1 "$ROUNDS"); do
    for s in "${scenarios[@]}"; do
      IFS='|' read -r label pattern count ident <<< "$s"
      key="$mode-$pattern-$ident"
      run 18181 "$pattern" "$count" "$ident" "$anon" >> "$work/$key-bare.txt"
      run 18183 "$pattern" "$count" "$ident" "$anon" >> "$work/$key-min.txt"
      run 18182 "$pattern" "$count" "$ident" "$tokens" >> "$work/$key-full.txt"
    done
  done
  for s in "${scenarios[@]}"; do
    IFS='|' read -r label pattern count ident <<< "$s"
    key="$mode-$pattern-$ident"
    for stack in bare min full; do
      f="$work/$key-$stack.txt"
      rps=$(awk '{print $1}' "$f" | median)
      p50=$(awk '{print $2}' "$f" | median)
      p99=$(awk '{print $3}' "$f" | median)
      echo "$rps $p99" > "$f.m"
      read -r brps bp99 < "$work/$key-bare.txt.m"
      printf '%-9s %-28s %-8s %10.0f %8.2f %8.2f %7.0f%% %7.2fx\n' "$mode" "$label" "$stack" \
        "$rps" "$p50" "$p99" "$(awk -v a="$rps" -v b="$brps" 'BEGIN {print 100 * a / b}')" \
        "$(awk -v a="$p99" -v b="$bp99" 'BEGIN {print a / b}')"
    done
  done
  echo "RSS after the load ($mode, $tenants tenants): bare $(rss "bare-$mode"), minimal $(rss "min-$mode"), full $(rss "full-$mode")"
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  peak=$(sort -n "$work/conns-$mode.txt" | tail -n 1)
  echo "Postgres connections of the three servers: at most $peak during the $mode cases (each server's budget $budget; max_connections $max_conn)"
  stop "bare-$mode"; stop "full-$mode"; stop "min-$mode"
  for name in "bare-$mode" "min-$mode" "full-$mode"; do
    errors=$(grep -c -E '^tenant |ERROR' "$work/$name.log" || true)
    if [ "$errors" -gt 0 ]; then
      echo "$name logged $errors errors, the first: $(grep -m1 -E '^tenant |ERROR' "$work/$name.log")"
    fi
  done
done
