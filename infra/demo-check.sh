#!/usr/bin/env bash
# Used by test.sh with the stack already up: seeds the demo tenant, starts the
# demo runtime and plays the scripted handoff; fails if the script fails.
set -euo pipefail
: "${LAMBDA_URL:?start the stack first}" "${SIM_URL:?}" "${CARGO_TARGET_DIR:?}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap stop_all EXIT
port=$(free_port)
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
"$VENV/bin/python" "$REPO_ROOT/infra/seed.py" tenant demo support sandbox \
  --events-url "http://127.0.0.1:$port/events" --events-secret "$secret" \
  --sim-url "$SIM_URL" --lambda-url "$LAMBDA_URL" >/dev/null
DEMO_EVENTS_SECRET="$secret" start_bg demo-runtime "${STACK_LOGS:-/tmp}/demo.log" \
  "$CARGO_TARGET_DIR/debug/demo-runtime" serve --listen "127.0.0.1:$port" \
  --lambda-url "$LAMBDA_URL" --account demo --project support --env sandbox
wait_http "http://127.0.0.1:$port/health" 30
"$CARGO_TARGET_DIR/debug/demo-runtime" script --demo-url "http://127.0.0.1:$port" --sim-url "$SIM_URL" --timeout-secs 90
