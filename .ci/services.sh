#!/usr/bin/env bash
# What the test suites need, installed and started idempotently: the clients (psql, redis-cli),
# PostgreSQL and Redis answering on 127.0.0.1, pgvector and a Chroma server
# (.ci/vector-stores.sh), Chromium and playwright-core for the console's browser test
# (.ci/browser.sh), a Docker engine with the images of the DOCKER_PER_TENANT tests
# (.ci/docker.sh), and no databases left behind by interrupted runs. A second run
# takes seconds. Run by .ci/test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v pg_isready >/dev/null || missing+=(postgresql-client)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "Postgres is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Redis is down; starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
echo "redis: $(redis-cli -h 127.0.0.1 -p 6379 ping)"
bash .ci/vector-stores.sh
bash .ci/browser.sh
bash .ci/docker.sh

# Databases left behind by interrupted test runs.
psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'mtp\_test\_%'" |
  while read -r db; do
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
  done
