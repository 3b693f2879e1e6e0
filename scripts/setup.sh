#!/usr/bin/env bash
# Branchline development/CI setup. Idempotent; safe to run repeatedly.
#  - installs the Debian packages the end-to-end tests need (only when missing)
#  - creates .venv with the system Python (only when missing)
#  - installs the project in editable mode with dev extras (only when
#    pyproject.toml changed since the last install)
#  - builds the browser softphone (web/softphone: npm ci + esbuild into
#    dist/softphone.js) only when its sources or lock file changed since the last build
#  - makes sure PostgreSQL answers on 127.0.0.1:$BRANCHLINE_PG_PORT (default 5432) for
#    the IVR SQL tests: when nothing answers there, installs Debian's postgresql (only
#    if missing), creates a cluster on that port if none has it and starts it; then
#    makes sure the login role branchline_test (password branchline_test, CREATEDB,
#    not a superuser) exists. Debian's default pg_hba.conf already accepts password
#    logins over TCP from 127.0.0.1 (scram-sha-256), so pg_hba.conf is not touched.
set -euo pipefail

die() { echo "setup: ERROR: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(
  kamailio kamailio-sqlite-modules kamailio-extra-modules kamailio-utils-modules
  rtpengine sip-tester baresip espeak-ng sox sqlite3 python3-venv
  chromium  # the controller's web page tests (Playwright drives it; no browser download)
  kamailio-websocket-modules kamailio-tls-modules  # browsers: SIP over ws:// and wss://
)
# The softphone bundle is built with npm (web/softphone); any Node.js 18+ will do, so
# Debian's is installed only when there is none (a NodeSource node ships its own npm).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  APT_PACKAGES+=(nodejs npm)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  fi
fi

# PostgreSQL for tests/ivr (see the header): installed only when nothing answers.
PG_PORT="${BRANCHLINE_PG_PORT:-5432}"
pg_ready() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null
}
PG_START=0
if ! pg_ready; then
  PG_START=1
  APT_PACKAGES+=(postgresql)
fi

# ---------------------------------------------------------------- apt packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
  st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  if [ "$st" != "installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  say "missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    die "not root and no sudo: install them by hand: apt-get install ${missing[*]}"
  fi
  APT_STAMP=/var/lib/apt/periodic/branchline-update-stamp
  if [ ! -f "$APT_STAMP" ] || [ -n "$(find "$APT_STAMP" -mmin +1440 2>/dev/null)" ] \
     || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial || true)" ]; then
    say "apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update \
      || die "apt-get update failed"
    $SUDO mkdir -p "$(dirname "$APT_STAMP")"
    $SUDO touch "$APT_STAMP"
  fi
  # Debian's kamailio/rtpengine packages must not start their own services:
  # the tests run their own instances with generated configs. Debian already
  # leaves them disabled without a config, but a policy-rc.d that denies all
  # service starts makes that certain (101 = action forbidden). Only installed
  # temporarily, and only if the admin has none of their own.
  POLICY=/usr/sbin/policy-rc.d
  policy_added=0
  if [ ! -e "$POLICY" ]; then
    say "installing temporary $POLICY (deny service starts during install)"
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    policy_added=1
  fi
  apt_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${missing[@]}"
  }
  say "apt-get install ${missing[*]}"
  rc=0
  apt_install || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "install failed (exit $rc); refreshing package lists and retrying once"
    rc=0
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update || rc=$?
    [ "$rc" -ne 0 ] || { $SUDO touch "$APT_STAMP"; apt_install || rc=$?; }
  fi
  if [ "$policy_added" = 1 ]; then
    $SUDO rm -f "$POLICY"
  fi
  [ "$rc" -eq 0 ] || die "apt-get install failed (exit $rc)"
  # Stop anything the packages may have started anyway (best effort).
  for svc in kamailio rtpengine rtpengine-daemon; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      say "stopping service $svc started by the package"
      $SUDO systemctl stop "$svc" || true
    fi
  done
else
  say "Debian packages present"
fi

# ---------------------------------------------------------------- PostgreSQL
# Runs a command as the postgres OS user (peer authentication on the local socket).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  elif [ -n "$SUDO" ]; then
    (cd / && sudo -n -u postgres "$@")
  else
    return 1
  fi
}

if [ "$PG_START" = 1 ]; then
  say "nothing answers on 127.0.0.1:$PG_PORT: starting a local PostgreSQL cluster"
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    say "WARNING: pg_lsclusters missing (postgresql-common); SQL tests will be skipped"
  else
    clusters="$(pg_lsclusters -h 2>/dev/null || true)"
    cluster="$(awk -v p="$PG_PORT" '$3 == p && !f {print $1, $2, $4; f = 1}' <<<"$clusters")"
    if [ -z "$cluster" ]; then
      ver="$( (ls /usr/lib/postgresql 2>/dev/null || true) | sort -V | tail -n 1)"
      name=main
      if [ -n "$(awk -v v="$ver" '$1 == v && $2 == "main"' <<<"$clusters")" ]; then
        name=branchline  # "main" exists on another port: leave it alone
      fi
      if [ -z "$ver" ]; then
        say "WARNING: no PostgreSQL server version under /usr/lib/postgresql"
      else
        say "pg_createcluster $ver $name --port $PG_PORT"
        $SUDO pg_createcluster "$ver" "$name" --port "$PG_PORT" >/dev/null \
          || say "WARNING: pg_createcluster failed"
        cluster="$ver $name down"
      fi
    fi
    read -r pg_ver pg_name pg_status <<<"${cluster:-- - -}"
    if [ "$pg_ver" != "-" ] && [ "${pg_status%%,*}" != "online" ]; then
      say "pg_ctlcluster $pg_ver $pg_name start"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" start \
        || say "WARNING: starting PostgreSQL $pg_ver/$pg_name failed (see /var/log/postgresql)"
    fi
  fi
  if pg_ready; then
    say "PostgreSQL accepting connections on 127.0.0.1:$PG_PORT"
  else
    say "WARNING: PostgreSQL still not answering on 127.0.0.1:$PG_PORT; SQL tests will be skipped"
  fi
else
  say "PostgreSQL accepting connections on 127.0.0.1:$PG_PORT"
fi

# The tests' role. Best effort: a server we cannot administer locally (a container,
# another host) keeps whatever roles it has, and the tests fall back to other logins.
if pg_ready && id postgres >/dev/null 2>&1; then
  role_sql="select 1 from pg_roles where rolname = 'branchline_test'"
  if has_role="$(as_postgres psql -X -q -At -p "$PG_PORT" -d postgres -c "$role_sql" 2>/dev/null)"; then
    if [ "$has_role" != 1 ]; then
      say "creating PostgreSQL role branchline_test (tests only)"
      as_postgres psql -X -q -p "$PG_PORT" -d postgres -c \
        "create role branchline_test login createdb password 'branchline_test'" >/dev/null \
        || say "WARNING: could not create role branchline_test"
    fi
  else
    say "note: cannot administer the PostgreSQL on port $PG_PORT locally; role not checked"
  fi
fi

# ---------------------------------------------------------------- virtualenv
PY=""
for cand in /usr/bin/python3.11 /usr/bin/python3 python3.11 python3; do
  if command -v "$cand" >/dev/null 2>&1; then
    PY="$(command -v "$cand")"
    break
  fi
done
[ -n "$PY" ] || die "no python3 found"

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "creating $VENV with $PY ($("$PY" --version 2>&1))"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || die "python venv creation failed (is python3-venv installed?)"
else
  say "virtualenv present ($VENV)"
fi

STAMP="$VENV/.branchline-installed"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  say "pip install -e '.[dev]'"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip \
    || die "pip upgrade failed"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e '.[dev]' \
    || die "pip install -e '.[dev]' failed"
  touch "$STAMP"
else
  say "python dependencies up to date"
fi

# ---------------------------------------------------------------- browser softphone
# JsSIP (from npm, versions pinned by package-lock.json) bundled by esbuild into one
# static file that pages load. npm ci runs only when the lock file is newer than the
# installed tree (no install scripts: esbuild finds its platform binary package without
# its postinstall); the bundle is rebuilt only when a source is newer than it.
SOFT="$ROOT/web/softphone"
SOFT_JS="$SOFT/dist/softphone.js"
if [ -f "$SOFT_JS" ] && [ -z "$(find "$SOFT/package.json" "$SOFT/package-lock.json" \
      "$SOFT/src" -newer "$SOFT_JS" -print -quit)" ]; then
  say "softphone bundle up to date"
else
  command -v npm >/dev/null 2>&1 || die "npm missing: cannot build web/softphone"
  if [ ! "$SOFT/node_modules/.package-lock.json" -nt "$SOFT/package-lock.json" ]; then
    say "npm ci (web/softphone)"
    (cd "$SOFT" && npm ci --ignore-scripts --no-audit --no-fund) \
      || die "npm ci in web/softphone failed"
  fi
  say "building web/softphone/dist/softphone.js"
  (cd "$SOFT" && npm run --silent build) || die "softphone build failed"
fi

say "done"
