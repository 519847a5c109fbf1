#!/usr/bin/env bash
# Checks one tenant's configuration and prints a report; exits 1 if anything failed.
#   infra/config-check.sh ACCOUNT/PROJECT/ENV           AWS credentials and region from the environment
#   infra/config-check.sh --local ACCOUNT/PROJECT/ENV   the local stack started by infra/demo.sh
# Checks: the runtime secret (events_url, events_secret, destinations), the
# handoff_api key, and for each integration with a secret: well-formed, and the
# platform answers an authenticated call that changes nothing (token, read).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ "${1:-}" == "--local" ]]; then
  shift
  [[ -f "$STATE_DIR/stack.env" ]] || { log "no local stack has run (start it with infra/demo.sh)"; exit 2; }
  source "$STATE_DIR/stack.env"
  curl -sf -o /dev/null --max-time 2 "$SIM_URL/health" || { log "the local stack is not running (infra/demo.sh)"; exit 2; }
fi
[[ $# -eq 1 ]] || { echo "usage: $0 [--local] ACCOUNT_ID/PROJECT_ID/CLIENT_ENV" >&2; exit 2; }
cd "$REPO_ROOT"
# The workspace build (same feature set as the stack, so nothing recompiles).
cargo build --quiet --workspace --bins
exec "$CARGO_TARGET_DIR/debug/config-check" "$1"
