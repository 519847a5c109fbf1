#!/usr/bin/env bash
# Starts the whole local stack, plays one scripted Genesys handoff (printing the
# transcript), then keeps the widget and agent-desktop pages up until Ctrl-C.
# DEMO_EXIT=1 stops after the scripted handoff (used by the tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/infra/stack.sh"
cd "$REPO_ROOT"
trap stop_all EXIT INT TERM

"$REPO_ROOT/infra/setup.sh"
log "building the workspace (first run takes a few minutes)"
cargo build --workspace --bins --quiet
start_stack

demo_port=$(free_port)
events_secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export DEMO_URL="http://127.0.0.1:$demo_port"
"$VENV/bin/python" infra/seed.py tenant demo support sandbox \
  --events-url "$DEMO_URL/events" --events-secret "$events_secret" \
  --sim-url "$SIM_URL" --lambda-url "$LAMBDA_URL" >/dev/null
DEMO_EVENTS_SECRET="$events_secret" start_bg demo-runtime "$STACK_LOGS/demo.log" \
  "$CARGO_TARGET_DIR/debug/demo-runtime" serve --listen "127.0.0.1:$demo_port" \
  --lambda-url "$LAMBDA_URL" --account demo --project support --env sandbox
wait_http "$DEMO_URL/health" 30

echo
echo "=== scripted handoff ==="
"$CARGO_TARGET_DIR/debug/demo-runtime" script --demo-url "$DEMO_URL" --sim-url "$SIM_URL" --timeout-secs 90
echo
echo "Widget (chat, ask for a human):  $DEMO_URL/"
echo "Agent desktop (accept, reply):   $SIM_URL/genesys/desktop"
echo "Logs:                            $STACK_LOGS/"
if [[ "${DEMO_EXIT:-0}" == 1 ]]; then exit 0; fi
echo "Press Ctrl-C to stop everything."
while true; do sleep 3600; done
