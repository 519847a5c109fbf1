# Shared shell helpers for the local stack. Sourced, not run.
# Everything started here is recorded by PID and stopped by stop_all, which
# the callers install as an EXIT trap so a failure still cleans up.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Tools, logs and the build cache live outside the checkout: `cargo lambda
# watch` puts an inotify watch on every folder of the repo, and a Python venv
# inside it exhausts the system's watches. One cache is shared by every
# checkout on this machine (CI's fresh clone reuses what a session built).
STATE_DIR="${CHAT_HANDOFF_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-handoff}"
LOCAL_DIR="$STATE_DIR"
VENV="$STATE_DIR/venv"
NODE_DIR="$STATE_DIR/node"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STATE_DIR/target}"
STARTED_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS [EXPECT_ANY_STATUS]: until the URL answers.
wait_http() {
  local url=$1 secs=$2 any=${3:-}
  local deadline=$(( $(date +%s) + secs ))
  while (( $(date +%s) < deadline )); do
    if [[ -n "$any" ]]; then
      curl -s -o /dev/null --max-time 2 "$url" && return 0
    else
      curl -sf -o /dev/null --max-time 2 "$url" && return 0
    fi
    sleep 0.3
  done
  log "timed out waiting for $url"
  return 1
}

# start_bg NAME LOGFILE CMD...: runs CMD in its own process group, records the PID.
start_bg() {
  local name=$1 logfile=$2; shift 2
  setsid "$@" >"$logfile" 2>&1 < /dev/null &
  local pid=$!
  STARTED_PIDS+=("$pid")
  log "started $name (pid $pid, log $logfile)"
}

stop_all() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    # The whole process group: cargo lambda's function processes, java, etc.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${STARTED_PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
}

# The five Lambda functions (binary names).
FUNCTIONS="start-handoff outbound-relay end-session notification-poller inbound-webhook handoff-api"
