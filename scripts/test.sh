#!/usr/bin/env bash
# The whole test run, as CI does it (`.ci/run`): install what is missing, lint the contract,
# build with ASan+UBSan, unit tests (ctest), a throwaway PostgreSQL, migrate + seed (twice each:
# idempotent), the service behind a validating Prism proxy, the API tests (pytest), then:
# the service must exit 0 on SIGTERM, its log must hold no sanitizer report, and Prism's log no
# response violation.
#
#   scripts/test.sh [PYTEST_ARG...]    e.g. scripts/test.sh -k refund -x
#   env: KEEP_TMP=1 keeps the temp dirs; logs of the last run stay in build-asan/test-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

START=$SECONDS
LOGDIR=$MB_ROOT/build-asan/test-logs
SVC_PID="" PRISM_PID="" PG_TMP=""
CHECKS_OK=0 CHECKS_FAILED=0 FAILED_WHAT=""

pass() {
	CHECKS_OK=$((CHECKS_OK + 1))
	log "ok: $*"
}
fail() {
	CHECKS_FAILED=$((CHECKS_FAILED + 1))
	FAILED_WHAT="$FAILED_WHAT; $*"
	printf '%sFAILED: %s%s\n' "$MB_R" "$*" "$MB_N" >&2
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$PRISM_PID" ] && { stop_pid "$PRISM_PID" 5 || true; }
	[ -n "$SVC_PID" ] && { stop_pid "$SVC_PID" 10 || true; }
	if [ -n "${KEEP_TMP:-}" ]; then
		[ -n "${PG_TMP:-}" ] && { pg_stop "$PG_DATA" || true; }
		log "kept $PG_TMP"
	else
		pg_temp_stop || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. tools -------------------------------------------------------------------------------
ensure_packages build db test contract fuzz ha
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"

log "npm ci (tests/contract)"
NM=tests/contract/node_modules
stamp=$(cat tests/contract/package.json tests/contract/package-lock.json | sha256sum | cut -d' ' -f1)-$(node --version)
if [ "$(cat "$NM/.mb-stamp" 2>/dev/null)" != "$stamp" ]; then
	# --ignore-scripts: the only install script in the tree is a telemetry ping (@scarf/scarf).
	(cd tests/contract && NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
		die "npm ci failed in tests/contract"
	echo "$stamp" >"$NM/.mb-stamp"
fi
PRISM=$MB_ROOT/$NM/.bin/prism
SPECTRAL=$MB_ROOT/$NM/.bin/spectral
if [ ! -x "$PRISM" ] || [ ! -x "$SPECTRAL" ]; then die "prism/spectral missing after npm ci"; fi
[ -f api/openapi.yaml ] || die "api/openapi.yaml missing"
# Issue 15: Chromium and tests/docs (OWASP ruleset of the lint, Redoc bundle of the build).
bash scripts/checks/docs.sh install || die "scripts/checks/docs.sh install failed"

# --- 2. contract lint -----------------------------------------------------------------------
# A missing lint script fails the run: a guard that can vanish silently guards nothing.
log "spectral lint"
if [ ! -f tests/contract/lint.sh ]; then
	fail "spectral lint: tests/contract/lint.sh is missing"
elif SPECTRAL=$SPECTRAL bash tests/contract/lint.sh; then
	pass "spectral lint"
else
	fail "spectral lint"
fi

# Issue 15: Redocly lint, typed-client proof (tsc), breaking-change guard: scripts/checks/docs.sh.
for c in lint types breaking; do if bash scripts/checks/docs.sh $c >"$LOGDIR/docs-$c.log" 2>&1; then pass "docs $c"; else fail "docs $c (log: $LOGDIR/docs-$c.log)" && tail -n 25 "$LOGDIR/docs-$c.log" >&2; fi; done

# --- 3. build + unit tests ------------------------------------------------------------------
build build-asan -DSANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
BIN=$MB_ROOT/build-asan/mpn-benefits

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$MB_ROOT/tests/lsan.supp:print_suppressions=0

log "ctest"
# --no-tests=error: a build that registers no unit test must not pass as "0 of 0 failed".
if ctest --test-dir build-asan --output-on-failure --no-tests=error 2>&1 | tee "$LOGDIR/ctest.log"; then
	pass "ctest"
else
	fail "ctest"
fi
CTEST_PASSED=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2 \1/p' "$LOGDIR/ctest.log" | awk '{print $1-$2}' | tail -n1)
CTEST_FAILED=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$LOGDIR/ctest.log" | tail -n1)

# --- 3b. libFuzzer harnesses, a few seconds each ---------------------------------------------
# The long runs are scripts/fuzz.sh; here each tests/fuzz/fuzz_*.c harness (clang, build-fuzz,
# -DFUZZ=ON) runs LIBFUZZER_SECONDS from its seed corpus, two at a time, and must end without
# a crash, a leak or a sanitizer report, after a positive number of executions.
LIBFUZZER_SECONDS=${LIBFUZZER_SECONDS:-4}
log "libFuzzer harnesses (${LIBFUZZER_SECONDS}s each)"
if ! CC=clang cmake -S . -B build-fuzz -DFUZZ=ON -DCMAKE_BUILD_TYPE=Debug >"$LOGDIR/build-fuzz.log" 2>&1 ||
	! cmake --build build-fuzz --target fuzzers -j "$(nproc 2>/dev/null || echo 2)" >>"$LOGDIR/build-fuzz.log" 2>&1; then
	tail -n 30 "$LOGDIR/build-fuzz.log" >&2
	fail "building the libFuzzer harnesses"
else
	HARNESSES=$(find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' -printf '%f\n' | sed 's/\.c$//' | sort)
	[ -n "$HARNESSES" ] || fail "no libFuzzer harness in tests/fuzz"
	declare -A FZ_PIDS=()
	for h in $HARNESSES; do
		while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
		mkdir -p build-fuzz/ci-artifacts
		dict=()
		case $h in
		fuzz_auth_claims) dict=(-dict=tests/fuzz/dict/jwt_claims.dict) ;;
		fuzz_auth_header) dict=(-dict=tests/fuzz/dict/jwt_header.dict) ;;
		esac
		# A fresh work corpus each run (seeded from the committed one): the same inputs each
		# time, new finds thrown away.
		rm -rf "build-fuzz/ci-corpus/$h" && mkdir -p "build-fuzz/ci-corpus/$h"
		"build-fuzz/$h" "${dict[@]}" -max_total_time="$LIBFUZZER_SECONDS" -timeout=10 -max_len=16384 \
			-print_final_stats=1 -artifact_prefix="build-fuzz/ci-artifacts/$h-" \
			"build-fuzz/ci-corpus/$h" "tests/fuzz/corpus/$h" >"$LOGDIR/libfuzzer-$h.log" 2>&1 &
		FZ_PIDS[$h]=$!
	done
	for h in $HARNESSES; do
		rc=0
		wait "${FZ_PIDS[$h]}" || rc=$?
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGDIR/libfuzzer-$h.log" | tail -n1)
		if [ "$rc" = 0 ] && [ "${execs:-0}" -gt 0 ]; then
			pass "libFuzzer $h: $execs executions"
		else
			fail "libFuzzer $h (exit $rc, ${execs:-no} executions; log $LOGDIR/libfuzzer-$h.log)"
			grep -E -m1 -A30 'ERROR: |runtime error:|deadly signal' "$LOGDIR/libfuzzer-$h.log" >&2 ||
				tail -n 20 "$LOGDIR/libfuzzer-$h.log" >&2
		fi
	done
fi

# --- 4. database ----------------------------------------------------------------------------
pg_temp_start
mb_test_env

# db_dump FILE : schema and data of the test database, lines sorted (a row rewritten with the
# same values may move in the heap: the order of COPY lines is no difference), without
# pg_dump's per-dump random \restrict key.
db_dump() {
	"$PG_BIN/pg_dump" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d mpn --no-owner --no-privileges \
		--no-comments 2>>"$LOGDIR/setup.log" | grep -E -v '^--|^\\(un)?restrict ' | LC_ALL=C sort >"$1" ||
		die "pg_dump failed (log: $LOGDIR/setup.log)"
	[ -s "$1" ] || die "pg_dump wrote nothing"
}

# The subcommands run under the sanitizers too: a leak or UB there fails the step. Each runs
# twice, and the second run must leave schema and data exactly as the first left them.
setup_ok=1
for step in migrate seed-demo; do
	for run in 1 2; do
		log "mpn-benefits $step ($run)"
		"$BIN" "$step" >>"$LOGDIR/setup.log" 2>&1 || {
			tail -n 40 "$LOGDIR/setup.log" >&2
			die "mpn-benefits $step failed (log: $LOGDIR/setup.log)"
		}
		db_dump "$LOGDIR/dump-$step-$run.sql"
	done
	if ! diff -u "$LOGDIR/dump-$step-1.sql" "$LOGDIR/dump-$step-2.sql" >"$LOGDIR/dump-$step.diff"; then
		setup_ok=0
		fail "mpn-benefits $step is not idempotent: a second run changed the database"
		head -n 40 "$LOGDIR/dump-$step.diff" >&2
	fi
done
[ "$setup_ok" = 1 ] && pass "migrate x2 + seed-demo x2 (second runs change nothing)"

# --- 5. service + Prism ---------------------------------------------------------------------
SVC_PORT=$(free_port)
SVC_LOG=$LOGDIR/service.log
log "service on 127.0.0.1:$SVC_PORT"
# The service runs as its own database role (sql/006_service_role.sql); the tests' own checks
# and the migrations use the superuser of DATABASE_URL.
MB_SERVICE_DATABASE_URL=$(mb_service_url "$DATABASE_URL")
export MB_SERVICE_DATABASE_URL
DATABASE_URL=$MB_SERVICE_DATABASE_URL PORT=$SVC_PORT "$BIN" serve >"$SVC_LOG" 2>&1 &
SVC_PID=$!
wait_http "http://127.0.0.1:$SVC_PORT/healthz" 30 "$SVC_PID" || {
	tail -n 40 "$SVC_LOG" >&2
	die "the service did not come up"
}

PRISM_PORT=$(free_port)
PRISM_LOG=$LOGDIR/prism.log
log "Prism proxy on 127.0.0.1:$PRISM_PORT"
# No --errors: Prism forwards everything and only logs violations (checked below).
# --cors=false: otherwise Prism answers CORS preflights itself and adds its own
# Access-Control-* headers, hiding the service's CORS behaviour.
"$PRISM" proxy api/openapi.yaml "http://127.0.0.1:$SVC_PORT" --port "$PRISM_PORT" --host 127.0.0.1 \
	--cors=false >"$PRISM_LOG" 2>&1 &
PRISM_PID=$!
wait_http "http://127.0.0.1:$PRISM_PORT/healthz" 60 "$PRISM_PID" || {
	tail -n 40 "$PRISM_LOG" >&2
	die "Prism did not come up"
}

# Issue 15: GET /docs in headless Chromium (every operation, no console error); docs.png kept.
if bash scripts/checks/docs.sh browser "http://127.0.0.1:$SVC_PORT" "$LOGDIR" >"$LOGDIR/docs-browser.log" 2>&1; then pass "GET /docs in Chromium"; else fail "GET /docs in Chromium (log: $LOGDIR/docs-browser.log)" && tail -n 25 "$LOGDIR/docs-browser.log" >&2; fi

# --- 6. API tests ---------------------------------------------------------------------------
log "pytest tests/api"
export MB_BASE=http://127.0.0.1:$PRISM_PORT
export MB_DIRECT=http://127.0.0.1:$SVC_PORT
export MB_BIN=$BIN MB_SERVICE_LOG=$SVC_LOG MB_LOG_DIR=$LOGDIR MB_PRISM_LOG=$PRISM_LOG
export MB_PGDATA=$PG_DATA MB_PGCTL=$PG_BIN/pg_ctl MB_PGPORT=$PG_PORT MB_PGSOCK=$PG_SOCK
MB_PG_OSUSER=$(pg_os_user)
export MB_PGOPTS=$PG_OPTS MB_PGLOG=$PG_LOG MB_PG_USER=postgres MB_PG_OSUSER
export MB_TRAFFIC_LOG=$LOGDIR/traffic.jsonl # issue 18: answers through Prism, for the strict check
export PYTHONDONTWRITEBYTECODE=1
PYTEST_RC=0
"$PY" -m pytest -q -p no:cacheprovider --junitxml="$LOGDIR/pytest.xml" tests/api "$@" || PYTEST_RC=$?
case $PYTEST_RC in
0) pass "pytest" ;;
5) fail "pytest collected no test" ;;
*) fail "pytest (exit $PYTEST_RC)" ;;
esac
read -r PY_PASSED PY_FAILED PY_SKIPPED < <("$PY" - "$LOGDIR/pytest.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 0, 0); sys.exit()
t = f = s = 0
for ts in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
    t += int(ts.get("tests", 0)); s += int(ts.get("skipped", 0))
    f += int(ts.get("failures", 0)) + int(ts.get("errors", 0))
print(t - f - s, f, s)
EOF
)

# --- 7. shutdown + logs ---------------------------------------------------------------------
stop_pid "$PRISM_PID" 5 || true
PRISM_PID=""

log "SIGTERM to the service"
SVC_RC=0
stop_pid "$SVC_PID" 30 || SVC_RC=$?
SVC_PID=""
if [ "$SVC_RC" = 0 ]; then pass "service exited 0 on SIGTERM"; else fail "service exited $SVC_RC on SIGTERM"; fi

# Sanitizer reports in the service's log and in the logs of servers that tests spawned.
SAN_RE='ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer'
san_hits=$(grep -E -n "$SAN_RE" "$LOGDIR"/service*.log "$LOGDIR/setup.log" 2>/dev/null || true)
if [ -z "$san_hits" ]; then
	pass "no sanitizer report"
else
	fail "sanitizer reports"
	echo "$san_hits" >&2
	grep -E -l "$SAN_RE" "$LOGDIR"/service*.log "$LOGDIR/setup.log" 2>/dev/null | while IFS= read -r f; do
		echo "--- first report in $f:" >&2
		grep -E -m1 -A40 "$SAN_RE" "$f" >&2 || true
	done
fi

# Contract: every response that went through Prism must match api/openapi.yaml.
if "$PY" tests/contract/prism-check.py "$PRISM_LOG"; then
	pass "no contract violation in responses"
else
	fail "contract violations (Prism)"
fi
# Issue 18: the same answers, strictly (ajv, OpenAPI 3.0 semantics); then the consumer suite.
if [ $# -gt 0 ] && [ ! -s "$MB_TRAFFIC_LOG" ]; then
	log "strict contract check: this subset of tests sent nothing through Prism (the whole run always does)"
elif bash tests/consumer/strict-check.sh "$MB_TRAFFIC_LOG"; then pass "strict contract check (ajv)"; else fail "strict contract check (ajv)"; fi
if bash tests/consumer/portman.sh "$LOGDIR"; then pass "consumer suite (Portman + Newman)"; else fail "consumer suite (Portman + Newman)"; fi

# Problem codes (issue 15): every code the service answered an operation with, in this run
# (its access logs, spawned servers' included), is declared in that operation's x-problem-codes.
if "$PY" scripts/contract_codes.py --check "$LOGDIR"/service*.log; then
	pass "every problem code answered is declared for its operation"
else
	fail "problem codes not declared in api/openapi.yaml (scripts/contract_codes.py)"
fi

# --- 8. summary -----------------------------------------------------------------------------
TOTAL_PASSED=$((${CTEST_PASSED:-0} + PY_PASSED))
TOTAL_FAILED=$((${CTEST_FAILED:-0} + PY_FAILED))
echo
echo "mpn-benefits test run: ctest ${CTEST_PASSED:-0} passed / ${CTEST_FAILED:-0} failed;" \
	"pytest $PY_PASSED passed / $PY_FAILED failed / $PY_SKIPPED skipped;" \
	"checks $CHECKS_OK ok / $CHECKS_FAILED failed; $((SECONDS - START))s; logs in $LOGDIR"
if [ "$CHECKS_FAILED" -gt 0 ]; then
	echo "FAILED:${FAILED_WHAT#;}"
	echo "summary: $TOTAL_PASSED passed, $((TOTAL_FAILED > 0 ? TOTAL_FAILED : CHECKS_FAILED)) failed, $PY_SKIPPED skipped"
	exit 1
fi
echo "summary: $TOTAL_PASSED passed, 0 failed, $PY_SKIPPED skipped"
