#!/usr/bin/env bash
# Runs every test: format and lint, unit tests, the SAM template check, then the
# end-to-end suite against the real local stack (DynamoDB Local, moto, the
# simulators, cargo lambda watch), which this script starts and stops, and the
# browser tests against that same stack, then a small soak with faults on a
# stack of its own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/infra/stack.sh"
cd "$REPO_ROOT"
trap stop_all EXIT INT TERM
started=$(date +%s)

"$REPO_ROOT/infra/setup.sh"
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "unit tests"
# Default members only: the e2e crate needs the stack and runs below.
cargo test --quiet 2>&1 | tee "$LOCAL_DIR/unit-tests.log"
log "SAM template: sam validate --lint, and no wildcard IAM"
"$REPO_ROOT/infra/validate-template.sh"
(cd "$REPO_ROOT/infra" && "$VENV/bin/python" -m unittest -q check_iam_test)
"$VENV/bin/python" "$REPO_ROOT/infra/check_iam.py" "$REPO_ROOT/template.yaml" | tail -n 1

log "building binaries for the local stack"
cargo build --workspace --bins --tests --quiet
export STACK_LOGS="$LOCAL_DIR/test-logs"
rm -rf "$STACK_LOGS"
start_stack
log "end-to-end tests (conformance suite per provider + Genesys specifics)"
export CONFORMANCE_REPORT="$LOCAL_DIR/conformance.txt"
rm -f "$CONFORMANCE_REPORT"
cargo test -p e2e -- --test-threads 4 2>&1 | tee "$LOCAL_DIR/e2e-tests.log" | grep -E "^test |test result|panicked"
echo "--- conformance capabilities ---"
sort -u "$CONFORMANCE_REPORT" 2>/dev/null || echo "(no capability lines were written)"
log "demo script (scripted handoff through the widget's API)"
bash "$REPO_ROOT/infra/demo-check.sh"
log "browser tests (widget + each agent desktop in headless Chromium, same stack)"
bash "$REPO_ROOT/infra/browser-test.sh"
log "soak with faults at CI size (infra/soak.sh starts its own stack with crash injection)"
stop_all
# Same faults as the full-size run, held-back webhooks included: the soak's
# tenants put agent messages back in order (README, Soak with faults).
bash "$REPO_ROOT/infra/soak.sh" --sessions "${SOAK_SESSIONS:-60}" --messages "${SOAK_MESSAGES:-600}" \
  --concurrency "${SOAK_SESSIONS:-60}"
log "all tests passed in $(( $(date +%s) - started )) s"
