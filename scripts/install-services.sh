#!/usr/bin/env bash
# Installs the real programs the tests use when they are missing: Debian's redis-server (limits
# shared between processes), chromium (the playground's browser test, driven by Playwright),
# PostgreSQL (`serve --database postgresql://`; tests run their own cluster with its initdb) and
# g++ + ninja (the engine's decode-attention kernel, compiled once per machine).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# The decode-attention kernel is compiled at first engine start (torch cpp_extension).
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
