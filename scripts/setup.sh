#!/usr/bin/env bash
# Branchline development/CI setup. Idempotent; safe to run repeatedly.
#  - installs the Debian packages the end-to-end tests need (only when missing)
#  - creates .venv with the system Python (only when missing)
#  - installs the project in editable mode with dev extras (only when
#    pyproject.toml changed since the last install)
set -euo pipefail

die() { echo "setup: ERROR: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(
  kamailio kamailio-sqlite-modules kamailio-extra-modules kamailio-utils-modules
  rtpengine sip-tester baresip espeak-ng sox sqlite3 python3-venv
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  fi
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

say "done"
