#!/usr/bin/env bash
# Vector stores for the tests, installed and started idempotently:
#  - pgvector in the local PostgreSQL (extension "vector"), built as Debian's own package
#    postgresql-<major>-pgvector when the configured suites have no binary for this major;
#  - a Chroma server on 127.0.0.1:8100 (chromadb from PyPI in its own virtualenv, outside the
#    repo), left running in the background with its data under /var/lib/mt-paas-chroma.
# What is already installed is not installed again, and a server that already answers is not
# restarted, so a second run takes seconds. Prints one status line per store at the end.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
CHROMA_HOST=127.0.0.1
CHROMA_PORT=8100
CHROMA_VERSION="${MTP_CHROMA_VERSION:-1.5.9}"
CHROMA_HOME=/opt/mt-paas-chroma
CHROMA_VENV="$CHROMA_HOME/venv"
CHROMA_DATA=/var/lib/mt-paas-chroma
CHROMA_LOG=/var/log/mt-paas-chroma.log
CHROMA_PIDFILE=/run/mt-paas-chroma.pid
CHROMA_URL="http://$CHROMA_HOST:$CHROMA_PORT"

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
  if ((apt_updated == 0)); then
    apt-get update -qq
    apt_updated=1
  fi
}

# ---------------------------------------------------------------- pgvector
pg_major() {
  local num
  if num=$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'SHOW server_version_num' 2>/dev/null) &&
    [[ "$num" =~ ^[0-9]+$ ]]; then
    echo $((num / 10000))
  else
    ls /etc/postgresql | sort -V | tail -n1
  fi
}

PG="$(pg_major)"
PGV_PKG="postgresql-$PG-pgvector"

pgvector_installed() {
  [[ -f "/usr/share/postgresql/$PG/extension/vector.control" && -f "/usr/lib/postgresql/$PG/lib/vector.so" ]]
}

# Debian bookworm ships no pgvector binary; trixie's source package builds for any major that
# postgresql-common supports. Its deb-src is read through a private apt state so /etc/apt stays
# untouched.
build_pgvector_deb() {
  local apt_opts
  work="$(mktemp -d /tmp/mtp-pgvector.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/src"
  cat >"$work/sources.list" <<'EOF'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
EOF
  apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)

  apt_update_once
  apt-get install -y -qq --no-install-recommends \
    "postgresql-server-dev-$PG" postgresql-server-dev-all debhelper dpkg-dev >/dev/null
  apt-get "${apt_opts[@]}" update -qq
  (cd "$work/src" && apt-get "${apt_opts[@]}" source -qq pgvector >/dev/null)

  local dir
  dir="$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)"
  (
    cd "$dir"
    # Depend on postgresql-$PG itself, not on the newest minor that postgresql-common knows of
    # (the extension ABI is stable within a major; the running server's minor may be older).
    : >debian/minor_versions
    # Build for the running major only.
    echo "$PG" >debian/pgversions
    pg_buildext updatecontrol >/dev/null
    DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -b -uc -us -d >"$work/build.log" 2>&1 ||
      { tail -n 40 "$work/build.log" >&2; exit 1; }
  )
  apt-get install -y -qq "$work/src/${PGV_PKG}_"*.deb >/dev/null
}

if pgvector_installed; then
  echo "pgvector: already installed for PostgreSQL $PG"
else
  echo "pgvector: installing $PGV_PKG"
  apt_update_once
  if apt-cache show "$PGV_PKG" >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends "$PGV_PKG" >/dev/null
  else
    echo "pgvector: no $PGV_PKG in the configured suites; building it from Debian's source package"
    build_pgvector_deb
  fi
  pgvector_installed || { echo "pgvector: install failed" >&2; exit 1; }
fi

# ---------------------------------------------------------------- Chroma
chroma_up() { curl -fsS -m 2 "$CHROMA_URL/api/v2/heartbeat" >/dev/null 2>&1; }

chroma_installed_version() {
  [[ -x "$CHROMA_VENV/bin/chroma" ]] || return 1
  "$CHROMA_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chromadb"))' 2>/dev/null
}

if [[ "$(chroma_installed_version || true)" == "$CHROMA_VERSION" ]]; then
  echo "chroma: chromadb $CHROMA_VERSION already installed in $CHROMA_VENV"
else
  echo "chroma: installing chromadb==$CHROMA_VERSION into $CHROMA_VENV"
  py="$(command -v python3.11 || command -v python3)"
  mkdir -p "$CHROMA_HOME"
  if [[ ! -x "$CHROMA_VENV/bin/pip" ]]; then
    rm -rf "$CHROMA_VENV"
    if ! "$py" -m venv "$CHROMA_VENV" 2>/dev/null; then
      rm -rf "$CHROMA_VENV"
      apt_update_once
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      /usr/bin/python3 -m venv "$CHROMA_VENV"
    fi
  fi
  "$CHROMA_VENV/bin/pip" install -q --disable-pip-version-check "chromadb==$CHROMA_VERSION"
  # A server of another version that still answers would otherwise be kept.
  if chroma_up && [[ -f "$CHROMA_PIDFILE" ]]; then
    kill "$(cat "$CHROMA_PIDFILE")" 2>/dev/null || true
    for _ in $(seq 1 20); do chroma_up || break; sleep 0.5; done
  fi
fi

if chroma_up; then
  echo "chroma: already answering on $CHROMA_URL"
else
  echo "chroma: starting on $CHROMA_URL"
  mkdir -p "$CHROMA_DATA" "$(dirname "$CHROMA_LOG")"
  (
    cd /
    ANONYMIZED_TELEMETRY=False setsid nohup "$CHROMA_VENV/bin/chroma" run \
      --host "$CHROMA_HOST" --port "$CHROMA_PORT" --path "$CHROMA_DATA" \
      >>"$CHROMA_LOG" 2>&1 </dev/null &
    echo $! >"$CHROMA_PIDFILE"
  )
  for _ in $(seq 1 120); do chroma_up && break; sleep 0.5; done
  if ! chroma_up; then
    echo "chroma: no heartbeat from $CHROMA_URL after 60 s; end of $CHROMA_LOG:" >&2
    tail -n 30 "$CHROMA_LOG" >&2 || true
    exit 1
  fi
fi

# ---------------------------------------------------------------- status
pgv_deb="$(dpkg-query -W -f='${Version}' "$PGV_PKG" 2>/dev/null || echo 'not from a package')"
pgv_ext="$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc \
  "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'" 2>/dev/null || true)"
echo "pgvector: $PGV_PKG $pgv_deb, extension vector ${pgv_ext:-NOT visible to the server} on PostgreSQL $PG at $PG_HOST:$PG_PORT"
echo "chroma: chromadb $(chroma_installed_version || echo '?') answering at $CHROMA_URL (API $(curl -fsS -m 2 "$CHROMA_URL/api/v2/version" | tr -d '"')), data $CHROMA_DATA, log $CHROMA_LOG"
