#!/usr/bin/env bash
# Soak (not part of the test suite; issue 19): one Release service with the defaults
# (HTTP_MAX_CONNECTIONS 1024), a throwaway PostgreSQL with the demo data, then
#   1. the outage's reproduction: wrk -c2000 (twice the cap) for 10 s, then /readyz and an
#      authenticated request must answer within 2 s, and threads and descriptors come back;
#   2. 10 000 idle connections: the service's RSS (release build; target <= 64 MB) and the p99 of
#      normal requests meanwhile;
#   3. SOAK_SECONDS (600) of mixed load with connection churn (bench/soak_load.py: keep-alive
#      readers, a new connection per request, idle connections that come and go, bad tokens,
#      404s, slow headers), RSS, threads and descriptors sampled every 10 s, printed as a table;
#      "no growth" = the last third's RSS within 10 % (or 4 MB) of the first third's after warm-up.
#   scripts/soak.sh        env: SOAK_SECONDS (600), SOAK_RATE (requests/s of the paced load, 300)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SECS=${SOAK_SECONDS:-600}
RATE=${SOAK_RATE:-300}
SVC_PID="" PG_TMP="" OUT=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$SVC_PID" ] && { stop_pid "$SVC_PID" 20 || true; }
	pg_temp_stop || true
	[ -n "$OUT" ] && log "raw outputs in $OUT"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages build db bench
build build -DCMAKE_BUILD_TYPE=Release -DSANITIZE=OFF -DFUZZ=OFF
BIN=$MB_ROOT/build/mpn-benefits
OUT=$(mktemp -d /tmp/mb-soak.XXXXXX)
chmod 755 "$OUT"
pg_temp_start
export DATABASE_URL
mb_dev_env
"$BIN" migrate >"$OUT/setup.log" 2>&1 || die "migrate failed"
"$BIN" seed-demo >>"$OUT/setup.log" 2>&1 || die "seed-demo failed"
ulimit -n "$(ulimit -Hn)"
SVC_PORT=$(free_port)
PORT=$SVC_PORT setsid "$BIN" serve >"$OUT/service.log" 2>&1 &
SVC_PID=$!
wait_http "http://127.0.0.1:$SVC_PORT/readyz" 30 "$SVC_PID" || die "the service did not come up"
TOKEN=$("$BIN" token --sub 22222222-2222-4222-8222-000000000001 \
	--partner 11111111-1111-4111-8111-111111111111 --role global_admin --ttl 7200)
OP_TOKEN=$("$BIN" token --sub op-soak --role operator --ttl 7200)
export TOKEN OP_TOKEN
"$PY" bench/soak_load.py "http://127.0.0.1:$SVC_PORT" "$SVC_PID" "$SECS" "$RATE" "$OUT" | tee "$OUT/soak.txt"
