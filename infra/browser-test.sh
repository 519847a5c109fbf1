#!/usr/bin/env bash
# Browser tests: the demo widget and each simulator's agent desktop in headless
# Chromium (Debian's chromium, driven by npm playwright-core), one whole handoff
# per provider (tests/browser/handoff.test.js). Screenshots go to
# $STATE_DIR/browser-artifacts/<provider>/NN-step.png.
# With LAMBDA_URL and SIM_URL set (infra/test.sh) it uses that running stack;
# otherwise it builds and starts its own. BROWSER_PROVIDERS=genesys,zendesk
# limits the providers (default: all six).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
trap stop_all EXIT INT TERM

"$REPO_ROOT/infra/setup.sh" browser
if [[ -z "${LAMBDA_URL:-}" || -z "${SIM_URL:-}" ]]; then
  source "$REPO_ROOT/infra/stack.sh"
  log "building the workspace (first run takes a few minutes)"
  cargo build --workspace --bins --quiet
  export STACK_LOGS="${STACK_LOGS:-$LOCAL_DIR/browser-logs}"
  start_stack
fi
logs="${STACK_LOGS:-$LOCAL_DIR/logs}"
mkdir -p "$logs"

# A tenant of its own with all six integrations: the functions cache secrets,
# so reusing another script's tenant would push events to its old events_url.
account="browser$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
port=$(free_port)
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
demo_url="http://127.0.0.1:$port"
"$VENV/bin/python" "$REPO_ROOT/infra/seed.py" tenant "$account" support sandbox \
  --events-url "$demo_url/events" --events-secret "$secret" \
  --sim-url "$SIM_URL" --lambda-url "$LAMBDA_URL" >/dev/null
DEMO_EVENTS_SECRET="$secret" start_bg demo-runtime "$logs/browser-demo.log" \
  "$CARGO_TARGET_DIR/debug/demo-runtime" serve --listen "127.0.0.1:$port" \
  --lambda-url "$LAMBDA_URL" --account "$account" --project support --env sandbox
wait_http "$demo_url/health" 30

artifacts="$STATE_DIR/browser-artifacts"
rm -rf "$artifacts"
mkdir -p "$artifacts"
log "browser tests (headless chromium): widget $demo_url, desktops $SIM_URL/{provider}/desktop"
DEMO_URL="$demo_url" BROWSER_ARTIFACTS="$artifacts" \
  PLATFORM_CAPABILITIES="$("$CARGO_TARGET_DIR/debug/platform-capabilities")" \
  NODE_PATH="$NODE_DIR/node_modules" \
  node "$REPO_ROOT/tests/browser/handoff.test.js"
log "screenshots: $artifacts/<provider>/"
