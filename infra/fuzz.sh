#!/usr/bin/env bash
# Fuzzes every target in fuzz/ (cargo fuzz + libFuzzer: the webhook and event
# parsers, the signature verifiers, the request validators, the webhook
# function's payload dispatch), one after another, prints each target's
# execution count, and fails if any target crashed.
#
#   infra/fuzz.sh [SECONDS_PER_TARGET]    bounded time per target (default 60)
#   infra/fuzz.sh --runs N                until N executions per target
#   FUZZ_TARGETS="signature nice_byoc" infra/fuzz.sh ...   only these targets
#
# Toolchain: stable only. `cargo fuzz -s none` instruments with flags stable
# rustc accepts (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*)
# and passes no -Z flag, so it needs neither nightly nor RUSTC_BOOTSTRAP. The
# default AddressSanitizer needs -Zsanitizer; the targets are safe Rust over
# pure functions, where ASan roughly halves the speed for little gain.
# FUZZ_SANITIZER=address turns it on with RUSTC_BOOTSTRAP=1 (its runtime ships
# with stable rust-std). Debug assertions and overflow checks are on either way.
#
# Committed seeds (fuzz/corpus/<target>) are read, never written: inputs the
# fuzzer finds go to $STATE_DIR/fuzz-corpus, crashes to $STATE_DIR/fuzz-artifacts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT/fuzz"

mode=(-max_total_time=60)
case "${1:-}" in
  --runs) mode=("-runs=${2:?--runs needs a count}") ;;
  "") ;;
  *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] | --runs N" >&2; exit 2 ;;
  *) mode=("-max_total_time=$1") ;;
esac

sanitizer=${FUZZ_SANITIZER:-none}
if [[ "$sanitizer" != none ]]; then
  export RUSTC_BOOTSTRAP=1
fi
# Many codegen units: the cold build (AWS SDK included) fits 2 cores.
flags=(-s "$sanitizer" --codegen-units 16 --target-dir "$STATE_DIR/fuzz-target")
targets=(${FUZZ_TARGETS:-$(cargo fuzz list)})

log "building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build "${flags[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
  work="$STATE_DIR/fuzz-corpus/$t"
  artifacts="$STATE_DIR/fuzz-artifacts/$t/"
  out="$STATE_DIR/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$out")"
  log "fuzzing $t (${mode[*]})"
  started=$(date +%s)
  rc=0
  cargo fuzz run "${flags[@]}" "$t" "$work" "corpus/$t" -- \
    "${mode[@]}" -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts" \
    >"$out" 2>&1 || rc=$?
  secs=$(( $(date +%s) - started ))
  # libFuzzer's final stats; `Done N runs` (-runs) or `#N DONE` as fallbacks.
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out" | tail -n 1)
  [[ -n "$execs" ]] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$out" | tail -n 1)
  [[ -n "$execs" ]] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$out" | tail -n 1)
  status=ok
  if (( rc != 0 )) || grep -qE "^==[0-9]+==|panicked at|deadly signal|Test unit written" "$out"; then
    status="CRASHED (rc $rc): see $out and $artifacts"
    failed+=("$t")
    grep -E "panicked at|^==[0-9]+==ERROR|SUMMARY|Test unit written" "$out" | head -n 5 >&2 || true
  fi
  summary+=("$(printf '%-24s %12s execs %6s s  %s' "$t" "${execs:-?}" "$secs" "$status")")
done

echo "--- fuzzing: executions per target ---"
printf '%s\n' "${summary[@]}"
if (( ${#failed[@]} )); then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
echo "${#targets[@]} passed, 0 failed"
