#!/usr/bin/env bash
# Latency and throughput on the local stack (issue 7.3): starts the stack,
# runs the load driver (tests/e2e/src/bin/load.rs) at 200 msg/s and a sweep
# for the highest rate whose p99 stays under 100 ms, then measures DynamoDB
# Local's cost per request type (bench/ddb_local_ops.py). Writes
# $CHAT_HANDOFF_HOME/bench/load.md; run on its own (not from bench/run.sh) it
# also replaces the "End to end" section of bench/REPORT.md.
#   BENCH_LOAD_SECS (60)              length of the 200 msg/s run
#   BENCH_SWEEP="FROM STEP SECS"      the sweep (50 10 30)
#   BENCH_LOAD_PROFILE=release|debug  builds the stack runs (release)
# The stack is set up as in production where that matters for load:
# POLLER_REFRESH_MS 2000 (the function's default; tests use 500). At most 32
# requests are in flight and cargo lambda watch keeps at most 8 instances per
# function: with more, cargo lambda watch 1.9 stops answering under overload
# (it starts an instance per function every 100 ms while requests queue).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../infra/lib.sh"
source "$REPO_ROOT/infra/stack.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/infra/setup.sh"
out="$STATE_DIR/bench"
mkdir -p "$out"
trap stop_all EXIT INT TERM

profile=${BENCH_LOAD_PROFILE:-release}
secs=${BENCH_LOAD_SECS:-60}
read -r from step step_secs <<<"${BENCH_SWEEP:-50 10 30}"
cargo build --quiet --workspace --bins
export STACK_LOGS="$out/stack-logs" RUST_LOG=warn METRICS=off POLLER_REFRESH_MS=2000
export STACK_CONCURRENCY="${STACK_CONCURRENCY:-8}" LOAD_IN_FLIGHT="${LOAD_IN_FLIGHT:-32}"
[[ $profile == release ]] && export STACK_RELEASE=1
rm -rf "$STACK_LOGS"
log "starting the stack ($profile builds of the functions and the simulator)"
start_stack
load="$CARGO_TARGET_DIR/debug/load"
{
  echo "Measured by \`bench/load.sh\` on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo
  echo "Functions and simulator: $profile builds under cargo lambda watch (at most $STACK_CONCURRENCY"
  echo "instances per function), DynamoDB Local and moto, all on the same $(nproc) cores as the load"
  echo "generator ($LOAD_IN_FLIGHT requests in flight at most). 20 Genesys sessions, half the messages"
  echo "each way. Latency counts from when a message was due, so a generator held back by a"
  echo "saturated stack shows as latency."
  echo
  echo "### 200 msg/s for $secs s"
  echo
  "$load" 200 "$secs" 20
  echo
  echo "### Highest rate with p99 <= 100 ms (steps of $step msg/s from $from, $step_secs s each)"
  echo
  LOAD_WARMUP_SECS=10 "$load" sweep "$from" "$step" "$step_secs" 20
  echo
  echo "### DynamoDB Local's cost per request"
  echo
  echo "The request types a relayed message makes (agent -> widget: conversation index query,"
  echo "one TransactWriteItems of 3 puts, 2 UpdateItems after the push; customer -> agent:"
  echo "GetItem, conditional PutItem, UpdateItem), each sent back to back, measured on the"
  echo "stack's DynamoDB Local after the load:"
  echo
  "$VENV/bin/python" "$REPO_ROOT/bench/ddb_local_ops.py" --pid "$DDB_LOCAL_PID" 2>&1 | tail -n +3
} | tee "$out/load.md"
stop_all
trap - EXIT INT TERM

if [[ "${BENCH_FROM_RUN:-0}" != 1 && -f "$REPO_ROOT/bench/REPORT.md" ]]; then
  python3 - "$REPO_ROOT/bench/REPORT.md" "$out/load.md" <<'PY'
import sys
report, load = sys.argv[1], open(sys.argv[2]).read()
text = open(report).read()
head = text.split("## End to end on the local stack")[0]
open(report, "w").write(head + "## End to end on the local stack\n\n" + load)
PY
  log "rewrote the End to end section of bench/REPORT.md"
fi
