#!/usr/bin/env bash
# Soak with faults (issue 6.1): starts its own local stack with crash
# injection on (an invocation is cut short after the event log write, before
# the push, or after a message claim, before the send, on SOAK_CHAOS_EXIT_RATIO
# of the chances; default 0.05; see functions/common/src/chaos.rs), runs the soak
# driver (tests/e2e/src/bin/soak.rs) and stops everything it started.
#   infra/soak.sh                      # full size: 1,000 sessions (100 at once), 10,000 messages
#   infra/soak.sh --sessions 60 --messages 600 --concurrency 60   # CI size
# The summary is also written to $CHAT_HANDOFF_HOME/soak-report.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/infra/stack.sh"
cd "$REPO_ROOT"
trap stop_all EXIT INT TERM

"$REPO_ROOT/infra/setup.sh"
log "building (the same build as infra/test.sh)"
cargo build --workspace --bins --tests --quiet
export CHAOS_EXIT_AFTER_LOG_RATIO="${SOAK_CHAOS_EXIT_RATIO:-0.05}"
export STACK_LOGS="$LOCAL_DIR/soak-logs"
# Few instances per function: the soak's calls in flight are capped (16) anyway,
# and cargo lambda watch starts fewer `cargo run`s under crash injection.
export STACK_CONCURRENCY="${STACK_CONCURRENCY:-4}"
rm -rf "$STACK_LOGS"
start_stack
log "soak (crash injection ratio $CHAOS_EXIT_AFTER_LOG_RATIO)"
set +e
"$CARGO_TARGET_DIR/debug/soak" "$@" 2>&1 | tee "$LOCAL_DIR/soak-report.txt"
status=${PIPESTATUS[0]}
set -e
crashes=$(grep -c "chaos: invocation cut short" "$STACK_LOGS/lambda.log" "$STACK_LOGS/poller.log" 2>/dev/null | awk -F: '{s+=$2} END {print s+0}')
echo "invocations cut short by crash injection: $crashes" | tee -a "$LOCAL_DIR/soak-report.txt"
exit "$status"
