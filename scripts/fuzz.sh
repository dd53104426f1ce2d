#!/usr/bin/env bash
# The long fuzz runs of issue 6 (the fast parts run in scripts/test.sh):
#
#   1. libfuzzer  every tests/fuzz/fuzz_*.c harness for FUZZ_SECONDS (default 60) under
#                 ASan + UBSan + LeakSanitizer (clang -fsanitize=fuzzer, build-fuzz, -DFUZZ=ON),
#                 from its seed corpus tests/fuzz/corpus/<harness> (new finds are kept in
#                 build-fuzz/corpus/<harness>, crashes in build-fuzz/artifacts/). Harnesses run
#                 side by side, one per core.
#   2. contract   tests/fuzz/contract_fuzz.py: FUZZ_REQUESTS (default 12000) generated requests
#                 straight at the ASan service (build-asan) on a throwaway PostgreSQL, then the
#                 database invariants over the WHOLE database; the service must exit 0 on
#                 SIGTERM with no sanitizer report in its log.
#   3. valgrind   memcheck on `mpn-benefits serve` of a Debug build without sanitizers
#                 (build-valgrind): VALGRIND_REQUESTS (default 300) mixed requests from the
#                 contract fuzzer, SIGTERM, no memcheck error, no definite, indirect or possible leak
#                 (tests/fuzz/valgrind.supp holds the few library-internal reports, explained).
#
# Run time on 2 cores with the defaults: about 3 x FUZZ_SECONDS for the harnesses, 1 minute for
# the contract run and 1-2 minutes for valgrind: about 6 minutes, plus the builds the first time.
#
#   scripts/fuzz.sh [libfuzzer|contract|valgrind]...     (default: all three)
#   env: FUZZ_SECONDS FUZZ_REQUESTS FUZZ_SEED VALGRIND_REQUESTS KEEP_TMP
#   logs: build-fuzz/logs/
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_REQUESTS=${FUZZ_REQUESTS:-12000}
VALGRIND_REQUESTS=${VALGRIND_REQUESTS:-300}
STEPS=${*:-libfuzzer contract valgrind}
for s in $STEPS; do
	case $s in libfuzzer | contract | valgrind) ;; *) die "unknown step '$s' (libfuzzer, contract, valgrind)" ;; esac
done
want() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

START=$SECONDS
LOGDIR=$MB_ROOT/build-fuzz/logs
SVC_PID="" PG_TMP=""
FAILED="" SUMMARY=""
note() { SUMMARY="$SUMMARY"$'\n'"  $*"; log "$*"; }
failed() {
	FAILED="$FAILED; $*"
	printf '%sFAILED: %s%s\n' "$MB_R" "$*" "$MB_N" >&2
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$SVC_PID" ] && { stop_pid "$SVC_PID" 30 || true; }
	if [ -n "${KEEP_TMP:-}" ]; then
		[ -n "${PG_TMP:-}" ] && { pg_stop "$PG_DATA" || true; }
		[ -n "${PG_TMP:-}" ] && log "kept $PG_TMP"
	else
		pg_temp_stop || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages build db test fuzz
mkdir -p "$LOGDIR"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$MB_ROOT/tests/lsan.supp:print_suppressions=0
export PYTHONDONTWRITEBYTECODE=1

# --- 1. libFuzzer ---------------------------------------------------------------------------

# fuzz_one NAME : runs one harness for FUZZ_SECONDS; its log is $LOGDIR/NAME.log.
fuzz_one() {
	local name=$1 dict=() work=$MB_ROOT/build-fuzz/corpus/$1
	mkdir -p "$work" "$MB_ROOT/build-fuzz/artifacts"
	case $name in
	fuzz_auth_claims) dict=(-dict="$MB_ROOT/tests/fuzz/dict/jwt_claims.dict") ;;
	fuzz_auth_header) dict=(-dict="$MB_ROOT/tests/fuzz/dict/jwt_header.dict") ;;
	esac
	"$MB_ROOT/build-fuzz/$name" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
		-max_len=16384 -print_final_stats=1 -artifact_prefix="$MB_ROOT/build-fuzz/artifacts/$name-" \
		"$work" "$MB_ROOT/tests/fuzz/corpus/$name" >"$LOGDIR/$name.log" 2>&1
}

if want libfuzzer; then
	log "building the libFuzzer harnesses (clang, build-fuzz)"
	CC=clang cmake -S . -B build-fuzz -DFUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null ||
		die "cmake configure failed (build-fuzz)"
	cmake --build build-fuzz --target fuzzers -j "$(nproc 2>/dev/null || echo 2)" >"$LOGDIR/build-fuzz.log" 2>&1 || {
		tail -n 40 "$LOGDIR/build-fuzz.log" >&2
		die "building the harnesses failed"
	}
	HARNESSES=$(find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' -printf '%f\n' | sed 's/\.c$//' | sort)
	log "libFuzzer: $(echo "$HARNESSES" | wc -w) harnesses x ${FUZZ_SECONDS}s, $(nproc) at a time"
	declare -A PIDS=()
	for h in $HARNESSES; do
		while [ "$(jobs -rp | wc -l)" -ge "$(nproc 2>/dev/null || echo 2)" ]; do wait -n || true; done
		fuzz_one "$h" &
		PIDS[$h]=$!
	done
	TOTAL_EXECS=0
	for h in $HARNESSES; do
		rc=0
		wait "${PIDS[$h]}" || rc=$?
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGDIR/$h.log" | tail -n1)
		TOTAL_EXECS=$((TOTAL_EXECS + ${execs:-0}))
		if [ "$rc" = 0 ] && [ -n "$execs" ]; then
			note "libFuzzer $h: ${execs} executions, no crash, no leak"
		else
			failed "libFuzzer $h (exit $rc; log $LOGDIR/$h.log)"
			grep -E -m1 -A30 'ERROR: |runtime error:|deadly signal' "$LOGDIR/$h.log" >&2 || tail -n 30 "$LOGDIR/$h.log" >&2
		fi
	done
	note "libFuzzer total: $TOTAL_EXECS executions"
fi

# --- the database (steps 2 and 3) -----------------------------------------------------------

if want contract || want valgrind; then
	pg_temp_start
	mb_test_env
	build build-asan -DSANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	for step in migrate seed-demo; do
		"$MB_ROOT/build-asan/mpn-benefits" "$step" >>"$LOGDIR/setup.log" 2>&1 || {
			tail -n 40 "$LOGDIR/setup.log" >&2
			die "mpn-benefits $step failed"
		}
	done
fi

# start_service LOG CMD... : starts CMD (a `serve`) on a free port; sets SVC_PID and SVC_URL.
start_service() {
	local logf=$1 port
	shift
	port=$(free_port)
	PORT=$port "$@" >"$logf" 2>&1 &
	SVC_PID=$!
	SVC_URL=http://127.0.0.1:$port
	wait_http "$SVC_URL/healthz" 120 "$SVC_PID" || {
		tail -n 40 "$logf" >&2
		die "the service did not come up ($logf)"
	}
}

# --- 2. the contract fuzzer -----------------------------------------------------------------

if want contract; then
	SVC_LOG=$LOGDIR/service-contract.log
	start_service "$SVC_LOG" "$MB_ROOT/build-asan/mpn-benefits" serve
	log "contract fuzzer: $FUZZ_REQUESTS requests at $SVC_URL"
	rc=0
	MB_DIRECT=$SVC_URL "$PY" tests/fuzz/contract_fuzz.py --base "$SVC_URL" --requests "$FUZZ_REQUESTS" \
		--scope global --json "$LOGDIR/contract.json" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
		2>&1 | tee "$LOGDIR/contract.log" || rc=$?
	svc_rc=0
	stop_pid "$SVC_PID" 30 || svc_rc=$?
	SVC_PID=""
	sent=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$LOGDIR/contract.json" 2>/dev/null || echo 0)
	if [ "$rc" = 0 ]; then note "contract fuzzer: $sent requests, every answer documented, invariants hold"; else failed "contract fuzzer (see $LOGDIR/contract.log)"; fi
	[ "$svc_rc" = 0 ] || failed "service exited $svc_rc on SIGTERM after the contract run"
	if grep -E -q 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$SVC_LOG"; then
		failed "sanitizer report in $SVC_LOG"
		grep -E -m1 -A40 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$SVC_LOG" >&2
	else
		note "ASan/UBSan/LSan: no report from the service after the contract run"
	fi
fi

# --- 3. valgrind memcheck -------------------------------------------------------------------

if want valgrind; then
	build build-valgrind -DCMAKE_BUILD_TYPE=Debug
	VG_LOG=$LOGDIR/valgrind.log
	log "valgrind memcheck: mpn-benefits serve, $VALGRIND_REQUESTS requests"
	# ASAN_OPTIONS etc. mean nothing to this build; valgrind's own exit code 99 flags errors.
	start_service "$LOGDIR/service-valgrind.log" valgrind --error-exitcode=99 --leak-check=full \
		--show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
		--track-origins=yes --num-callers=30 --suppressions="$MB_ROOT/tests/fuzz/valgrind.supp" \
		--gen-suppressions=all --log-file="$VG_LOG" "$MB_ROOT/build-valgrind/mpn-benefits" serve
	rc=0
	MB_DIRECT=$SVC_URL "$PY" tests/fuzz/contract_fuzz.py --base "$SVC_URL" --requests "$VALGRIND_REQUESTS" \
		>"$LOGDIR/valgrind-requests.log" 2>&1 || rc=$?
	tail -n 3 "$LOGDIR/valgrind-requests.log" >&2
	[ "$rc" = 0 ] || failed "contract fuzzer against the valgrind service (see $LOGDIR/valgrind-requests.log)"
	vg_rc=0
	stop_pid "$SVC_PID" 120 || vg_rc=$?
	SVC_PID=""
	errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$VG_LOG" | tail -n1)
	if [ "$vg_rc" = 0 ] && [ "${errors:-x}" = 0 ]; then
		note "valgrind memcheck: $VALGRIND_REQUESTS requests, 0 errors, heap $(sed -n 's/.*in use at exit: //p' "$VG_LOG" | tail -n1) in use at exit"
	else
		failed "valgrind memcheck (exit $vg_rc, ${errors:-?} errors; log $VG_LOG)"
		grep -E -m3 -B2 -A30 'Invalid|uninitialised|definitely lost in|indirectly lost in' "$VG_LOG" >&2 || tail -n 40 "$VG_LOG" >&2
	fi
fi

echo
echo "mpn-benefits fuzz run ($((SECONDS - START))s):$SUMMARY"
if [ -n "$FAILED" ]; then
	echo "FAILED:${FAILED#;}"
	exit 1
fi
echo "fuzz: all clean"
