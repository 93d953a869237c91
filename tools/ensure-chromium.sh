#!/usr/bin/env bash
# The Grid page's browser test drives Debian's chromium through Playwright, which cannot download its own
# browser here (only the package registries are reachable). Installs it with apt when it is missing.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and this user cannot install it; run: apt-get install chromium" >&2
    exit 1
  fi
  SUDO="sudo"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $CHROMIUM is missing and apt-get is not here; install Chromium at $CHROMIUM" >&2
  exit 1
fi
echo "ensure-chromium: installing Debian's chromium (the Grid page's browser test needs it)"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
