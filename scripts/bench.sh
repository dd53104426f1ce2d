#!/usr/bin/env bash
# Benchmark (not part of the test suite): the service against PostgreSQL's own speed for the
# same SQL. Installs what is missing (wrk, pgbench), builds Release, starts a throwaway
# PostgreSQL, migrates, seeds, loads bench/data.sql (2 500 partners, 20 000 users, 50 000
# benefits, 300 000 audit events), starts the service, then for each endpoint runs wrk on
# loopback and pgbench with the SQL the endpoint runs, and prints one table.
#
#   scripts/bench.sh
#   env: BENCH_SECONDS (20) per run, BENCH_WARMUP (2, unmeasured wrk seconds before each
#        endpoint), BENCH_CONNECTIONS (32), BENCH_THREADS (2),
#        BENCH_ONLY (the runs: list get seats keys, and issue 17's plain warm 304 cold (every read a miss: CACHE_MB=0) afterwrite (each read after a write) mixed
#        c256, and ratelimit (issue 15: the list with its 2 500 tokens against this
#        service, limiter on with its defaults, and a second one with RATE_LIMIT_PER_SUBJECT=0 and
#        RATE_LIMIT_PER_PARTNER=0, alternating on/off twice; prints on ÷ off), writecost (the seat
#        cycle with issue 17's data-version and document triggers on and off, and with the
#        events outbox made a no-op, alternating twice; prints both with ÷ without), instructions (not in the default: PostgreSQL's instructions per
#        seat pair, counted by valgrind in a single-user backend, with issue 17's triggers and
#        without; installs valgrind), ceiling (the warm and 304 lines against the service and against
#        bench/http_ceiling.c, the HTTP stack alone, alternating twice; prints both 304 ÷ 200);
#        default "list plain warm 304 cold afterwrite mixed c256 seats writecost ceiling", about
#        12 minutes),
#        BENCH_PGSS=1 (pg_stat_statements, nested statements included, for the seat cycle:
#        $OUT/pgss-seats.txt),
#        DB_POOL_SIZE (the service's; default here nproc + 1, see below), KEEP_TMP=1 (keep the
#        work dir),
#        BENCH_PERF=1 (perf record the service during the runs: $OUT/perf.data; BENCH_PERF=dwarf
#        unwinds with DWARF, which sees through the libraries built without frame pointers),
#        BENCH_AUTOGROUP (0 or 1: kernel.sched_autogroup_enabled for the run, restored at the
#        end, needs root; unset or "keep": as the machine has it. See README "Performance")
# Output: the table on stdout, and every raw output in the work dir it names.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SECS=${BENCH_SECONDS:-20}
WARMUP=${BENCH_WARMUP:-2}
CONN=${BENCH_CONNECTIONS:-32}
THR=${BENCH_THREADS:-2}
ONLY=${BENCH_ONLY:-list plain warm 304 cold afterwrite mixed c256 seats writecost ceiling}
KEYS_PARTNERS=400
SVC_PID="" OFF_PID="" COLD_PID="" CEIL_PID="" PERF_PID="" PG_TMP="" OUT="" AUTOGROUP_WAS=""
AUTOGROUP_FILE=/proc/sys/kernel/sched_autogroup_enabled

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$PERF_PID" ] && { kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null || true; }
	[ -n "$SVC_PID" ] && { stop_pid "$SVC_PID" 20 || true; }
	[ -n "$OFF_PID" ] && { stop_pid "$OFF_PID" 20 || true; }
	[ -n "$COLD_PID" ] && { stop_pid "$COLD_PID" 20 || true; }
	[ -n "$CEIL_PID" ] && { stop_pid "$CEIL_PID" 5 || true; }
	# KEEP_TMP: PostgreSQL's log too (deadlocks, slow statements)
	[ -n "${KEEP_TMP:-}" ] && [ -n "$OUT" ] && [ -f "${PG_LOG:-}" ] && cp "$PG_LOG" "$OUT/postgresql.log"
	pg_temp_stop || true
	[ -n "$AUTOGROUP_WAS" ] && echo "$AUTOGROUP_WAS" >"$AUTOGROUP_FILE"
	if [ -n "$OUT" ] && [ -z "${KEEP_TMP:-}" ] && [ "$rc" = 0 ]; then rm -rf "$OUT"; fi
	[ -n "$OUT" ] && [ -d "$OUT" ] && log "raw outputs kept in $OUT"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages build db bench
build build -DCMAKE_BUILD_TYPE=Release -DSANITIZE=OFF -DFUZZ=OFF
BIN=$MB_ROOT/build/mpn-benefits
PGBENCH=$PG_BIN/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench) || die "pgbench missing"
command -v wrk >/dev/null || die "wrk missing"

WANT_AUTOGROUP=${BENCH_AUTOGROUP:-keep}
case $WANT_AUTOGROUP in
0 | 1)
	if [ -w "$AUTOGROUP_FILE" ]; then
		AUTOGROUP_WAS=$(cat "$AUTOGROUP_FILE")
		echo "$WANT_AUTOGROUP" >"$AUTOGROUP_FILE"
		log "kernel.sched_autogroup_enabled $AUTOGROUP_WAS -> $WANT_AUTOGROUP for the run (restored at exit)"
	else
		die "BENCH_AUTOGROUP needs root (it writes $AUTOGROUP_FILE)"
	fi
	;;
keep) ;;
*) die "BENCH_AUTOGROUP must be 0, 1 or keep" ;;
esac
AUTOGROUP=$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo "n/a")

OUT=$(mktemp -d /tmp/mb-bench.XXXXXX)
chmod 755 "$OUT"

pg_temp_start
pgss_start() { # BENCH_PGSS=1: pg_stat_statements (nested statements too) for where the time goes
	pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 restart -m fast -o "$PG_OPTS \
		-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" >/dev/null ||
		die "PostgreSQL did not restart with pg_stat_statements"
	pg_psql "$PG_SOCK" "$PG_PORT" mpn -qc "CREATE EXTENSION pg_stat_statements" >/dev/null
}
[ -n "${BENCH_PGSS:-}" ] && pgss_start
export DATABASE_URL
mb_dev_env
# A pool sized to PostgreSQL's CPUs, which here are this machine's: nproc + 1 (3 on 2 CPUs).
# Measured on 2 CPUs: 3 keeps the list's p99 under 10 ms; 4 and 8 raise the list rate by a few
# per cent and the single benefit's by a tenth but, with sched_autogroup_enabled 1, let the
# p99 climb to 30-75 ms (README "Performance"). The service's own default is 8.
export DB_POOL_SIZE=${DB_POOL_SIZE:-$(($(nproc) + 1))}
"$BIN" migrate >"$OUT/setup.log" 2>&1 || die "migrate failed ($OUT/setup.log)"
"$BIN" seed-demo >>"$OUT/setup.log" 2>&1 || die "seed-demo failed ($OUT/setup.log)"
log "loading bench/data.sql"
t0=$SECONDS
psql_bench() { pg_psql "$PG_SOCK" "$PG_PORT" mpn -q "$@"; }
psql_bench -v kek="$KEY_ENCRYPTION_KEY" -v keys_partners=$KEYS_PARTNERS -f bench/data.sql \
	>>"$OUT/setup.log" 2>&1 || die "bench/data.sql failed ($OUT/setup.log)"
log "data loaded in $((SECONDS - t0))s: $(psql_bench -tAc "SELECT (SELECT count(*) FROM partners) || ' partners, ' ||
	(SELECT count(*) FROM users) || ' users, ' || (SELECT count(*) FROM benefits) || ' benefits, ' ||
	(SELECT count(*) FROM audit_events) || ' audit events'")"
"$PY" bench/requests.py "$OUT" "$KEYS_PARTNERS"

SVC_PORT=$(free_port)
log "service (Release) on 127.0.0.1:$SVC_PORT"
# setsid: a session (so, with sched_autogroup_enabled 1, a scheduler autogroup) of its own, as
# PostgreSQL has (lib.sh pg_start) and as on separate machines; otherwise the service and wrk share one group's CPU share.
PORT=$SVC_PORT setsid "$BIN" serve >"$OUT/service.log" 2>&1 &
SVC_PID=$!
wait_http "http://127.0.0.1:$SVC_PORT/readyz" 30 "$SVC_PID" || die "the service did not come up"
URL=http://127.0.0.1:$SVC_PORT
if [ -n "${BENCH_PERF:-}" ]; then
	CG=-g
	[ "$BENCH_PERF" = dwarf ] && CG="--call-graph dwarf,16384"
	# shellcheck disable=SC2086
	perf record $CG -F 499 -p "$SVC_PID" -o "$OUT/perf.data" >"$OUT/perf.log" 2>&1 &
	PERF_PID=$!
fi

# route_exists LINE_OF_TSV : does the service know this route (not 404 not-found / 405)?
route_exists() {
	local m p t code
	IFS=$'\t' read -r m p t _ <<<"$1"
	code=$(curl -s -o "$OUT/probe.json" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $t" \
		-H 'Content-Type: application/json' -d '{}' "$URL$p")
	! { [ "$code" = 405 ] || { [ "$code" = 404 ] && grep -q '"No such resource."' "$OUT/probe.json"; }; }
}

run_wrk() { # NAME TAG : replays $OUT/TAG.tsv
	local name=$1 tag=$2
	if [ "$WARMUP" -gt 0 ]; then
		# Not measured: every pooled connection connects and prepares this endpoint's statements.
		BENCH_REQUESTS=$OUT/$tag.tsv BENCH_THREADS=$THR wrk -t"$THR" -c"$CONN" -d"${WARMUP}s" \
			-s bench/requests.lua "$URL" >"$OUT/wrk-$tag-warmup.txt" 2>&1 || true
		[ "$tag" = seats ] && free_seats
	fi
	log "wrk $tag: ${SECS}s, $CONN connections, $THR threads"
	BENCH_REQUESTS=$OUT/$tag.tsv BENCH_THREADS=$THR wrk -t"$THR" -c"$CONN" -d"${SECS}s" --latency \
		-s bench/requests.lua "$URL" >"$OUT/wrk-$tag.txt" 2>&1 || die "wrk failed: $(cat "$OUT/wrk-$tag.txt")"
	"$PY" bench/stats.py wrk "$name" "$OUT/wrk-$tag.txt" >>"$OUT/results.jsonl"
}

run_pgbench() { # NAME SCRIPT REQS_PER_TX LABEL
	local name=$1 script=$2 per=$3 label=$4 tag
	tag=$(basename "$script" .sql)
	log "pgbench $tag: ${SECS}s, $CONN clients, $THR threads, prepared"
	rm -f "$OUT"/pgbench_log.*
	(cd "$OUT" && "$PGBENCH" -n -M prepared -c "$CONN" -j "$THR" -T "$SECS" -l \
		-D clients="$CONN" -D kek="$KEY_ENCRYPTION_KEY" -f "$MB_ROOT/$script" \
		-h 127.0.0.1 -p "$PG_PORT" -U postgres mpn) >"$OUT/pgbench-$tag.txt" 2>&1 ||
		die "pgbench failed: $(tail -n 20 "$OUT/pgbench-$tag.txt")"
	"$PY" bench/stats.py pgbench "$name" "$per" "$label" "$OUT/pgbench-$tag.txt" "$OUT"/pgbench_log.* >>"$OUT/results.jsonl"
	rm -f "$OUT"/pgbench_log.*
}

# Frees every seat of the bench partners (DELETE, so the trigger keeps benefits.used right),
# once the service has finished the requests wrk left in flight when it exited: the DELETE
# otherwise deadlocked with them (503 answers, and seats they assigned after it: 409 errors in
# the next run). Retried all the same.
free_seats() {
	local i
	for i in $(seq 100); do
		curl -s "$URL/metrics" | grep -q '^mpn_http_requests_running 0$' && break
		sleep 0.1
	done
	for i in 1 2 3 4 5; do
		psql_bench -c "DELETE FROM seat_assignments WHERE user_id::text LIKE 'b1000000-%'" >/dev/null 2>&1 && return 0
		sleep 1
	done
	die "could not free the bench seats"
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

# --- issue 17: the list at limit=20 against a plain two-statement pgbench baseline, warm
# (the same 1 000 partners, whose answers fit in CACHE_MB), cold (every read right after a
# write to its partner), 304 (If-None-Match with the current ETag), mixed (95 % reads, 5 %
# writes) and the warm list at 256 connections. Each wrk run records the /metrics counters
# before and after (cache outcomes, list answers) next to wrk's figures in results17.jsonl.
run_wrk17() { # NAME TAG [CONNECTIONS] : replays $OUT/TAG.tsv
	local name=$1 tag=$2 conn=${3:-$CONN} file=$OUT/$2.tsv
	case $tag in c256 | cold) file=$OUT/warm.tsv ;; afterwrite) file=$OUT/cold.tsv ;; esac
	if [ "$WARMUP" -gt 0 ]; then
		BENCH_REQUESTS=$file BENCH_THREADS=$THR wrk -t"$THR" -c"$conn" -d"${WARMUP}s" \
			-s bench/requests.lua "$URL" >"$OUT/wrk-$tag-warmup.txt" 2>&1 || true
	fi
	case $tag in afterwrite | mixed) free_seats ;; esac
	curl -s "$URL/metrics" >"$OUT/metrics-$tag-before.txt"
	log "wrk $tag: ${SECS}s, $conn connections, $THR threads"
	BENCH_REQUESTS=$file BENCH_THREADS=$THR wrk -t"$THR" -c"$conn" -d"${SECS}s" --latency \
		-s bench/requests.lua "$URL" >"$OUT/wrk-$tag.txt" 2>&1 || die "wrk failed: $(cat "$OUT/wrk-$tag.txt")"
	curl -s "$URL/metrics" >"$OUT/metrics-$tag-after.txt"
	case $tag in afterwrite | mixed) free_seats ;; esac
	"$PY" bench/stats.py wrk17 "$name" "$tag" "$OUT/wrk-$tag.txt" "$SECS" "$conn" \
		"$OUT/metrics-$tag-before.txt" "$OUT/metrics-$tag-after.txt" "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/results17.jsonl"
}

issue17_runs() {
	: >"$OUT/results17.jsonl"
	if want plain; then
		log "pgbench list_plain: ${SECS}s, $CONN clients, $THR threads, prepared"
		rm -f "$OUT"/pgbench_log.*
		(cd "$OUT" && "$PGBENCH" -n -M prepared -c "$CONN" -j "$THR" -T "$SECS" -l \
			-f "$MB_ROOT/bench/pgbench/list_plain.sql" -h 127.0.0.1 -p "$PG_PORT" -U postgres mpn) \
			>"$OUT/pgbench-list_plain.txt" 2>&1 || die "pgbench failed: $(tail -n 20 "$OUT/pgbench-list_plain.txt")"
		"$PY" bench/stats.py pgbench "plain" 1 "" "$OUT/pgbench-list_plain.txt" "$OUT"/pgbench_log.* |
			"$PY" bench/stats.py tag17 "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/results17.jsonl"
		rm -f "$OUT"/pgbench_log.*
	fi
	want warm && run_wrk17 "warm list" warm
	if want 304; then
		log "the current ETag of each 304 line"
		"$PY" bench/requests.py etags "$OUT/inm.tsv" "$URL" || die "reading the ETags failed"
		run_wrk17 "304" inm
	fi
	if want cold; then
		# Every read a miss: the same lines as warm against a second service that keeps nothing
		# (CACHE_MB=0), so each read reads its version and then runs the list's SQL.
		COLD_PORT=$(free_port)
		CACHE_MB=0 PORT=$COLD_PORT setsid "$BIN" serve >"$OUT/service-cold.log" 2>&1 &
		COLD_PID=$!
		wait_http "http://127.0.0.1:$COLD_PORT/readyz" 30 "$COLD_PID" || die "the CACHE_MB=0 service did not come up"
		URL=http://127.0.0.1:$COLD_PORT run_wrk17 "cold list (every read a miss)" cold
		stop_pid "$COLD_PID" 20 || warn "the CACHE_MB=0 service did not exit 0"
		COLD_PID=""
	fi
	want afterwrite && run_wrk17 "each list right after a write to its partner" afterwrite
	want mixed && run_wrk17 "mixed" mixed
	want c256 && run_wrk17 "warm list, 256 connections" c256 256
	return 0
}

issue17_table() {
	[ -s "$OUT/results17.jsonl" ] && "$PY" bench/stats.py table17 "$OUT/results17.jsonl" "$RSS_KB"
	return 0
}
pgss_reset() { [ -z "${BENCH_PGSS:-}" ] || psql_bench -c "SELECT pg_stat_statements_reset()" >/dev/null; }
pgss_dump() { # TAG: the statements by total time, into $OUT/pgss-TAG.txt
	[ -n "${BENCH_PGSS:-}" ] || return 0
	psql_bench -P pager=off -c "SELECT round(total_exec_time::numeric, 0) AS total_ms, calls,
		round((total_exec_time / greatest(calls, 1))::numeric, 3) AS mean_ms, toplevel,
		left(regexp_replace(query, '\s+', ' ', 'g'), 150) AS query
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 40" >"$OUT/pgss-$1.txt"
	KEEP_TMP=1
}
# --- end of issue 17's runs

: >"$OUT/results.jsonl"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if want list; then
	run_wrk "GET …/benefits (list)" list
	run_pgbench "GET …/benefits (list)" bench/pgbench/list.sql 1 ""
fi
if want get; then
	run_wrk "GET …/benefits/{b}" get
	run_pgbench "GET …/benefits/{b}" bench/pgbench/get.sql 1 ""
fi
if want seats; then
	if route_exists "$(head -n1 "$OUT/seats.tsv")"; then
		free_seats
		pgss_reset
		run_wrk "seat assign + remove" seats
		pgss_dump seats
		free_seats
		run_pgbench "seat assign + remove" bench/pgbench/seats_tx.sql 2 "same transactions"
		free_seats
		run_pgbench "seat assign + remove" bench/pgbench/seats_bare.sql 2 "INSERT/DELETE only"
		free_seats
	else
		warn "POST …/assignments is not there (yet): skipping the seat cycle"
	fi
fi
if want keys; then
	if route_exists "$(head -n1 "$OUT/keys.tsv")"; then
		log "first reveal of $KEYS_PARTNERS benefits"
		"$PY" - "$OUT/keys.tsv" "$URL" <<'PYEOF' || die "first reveals failed"
import sys, urllib.request, urllib.error
bad = 0
for line in open(sys.argv[1]):
    m, p, t, b = line.rstrip("\n").split("\t")
    req = urllib.request.Request(sys.argv[2] + p, data=b.encode(), method=m, headers={
        "Authorization": "Bearer " + t, "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as e:
        bad += 1
        if bad < 3:
            print(e.code, e.read()[:300], file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF
		run_wrk "POST …/keys (repeat reveal)" keys
		run_pgbench "POST …/keys (repeat reveal)" bench/pgbench/keys_tx.sql 1 ""
	else
		warn "POST …/keys is not there (yet): skipping the key reveals"
	fi
fi

issue17_runs
# ratio_of A B : the mean req/s of the service runs named "A (…)" and of those named "B (…)",
# and A ÷ B in per cent, as "A_RATE B_RATE PERCENT".
ratio_of() {
	"$PY" - "$OUT/results.jsonl" "$1" "$2" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def mean(name):
    v = [r["rps"] for r in rows if r["tool"] == "service" and r["name"].startswith(f"{name} (")]
    return sum(v) / len(v)
a, b = mean(sys.argv[2]), mean(sys.argv[3])
print(f"{a:.0f} {b:.0f} {a / b * 100:.0f}")
PYEOF
}
# on_off PREFIX : ratio_of "PREFIX on" "PREFIX off"
on_off() { ratio_of "$1 on" "$1 off"; }
# What issue 17's triggers cost the writes: the seat cycle with the data-version and document
# triggers (sql/007, sql/015) on and off, alternating, same data; afterwards the documents and
# versions the runs without them left behind are written again.
issue17_triggers() { # ENABLE|DISABLE
	psql_bench -c "DO \$\$ DECLARE t record; BEGIN FOR t IN SELECT tgrelid::regclass AS rel, tgname
		FROM pg_trigger WHERE NOT tgisinternal AND (tgname LIKE '%bump_version' OR tgname LIKE '%documents')
		LOOP EXECUTE format('ALTER TABLE %s $1 TRIGGER %I', t.rel, t.tgname); END LOOP; END \$\$" >/dev/null
}
# And what the events outbox (issue 12) costs them: emit_event and emit_event_data made no-ops
# for a run (the seat routes ignore what they return), then put back as they were.
outbox() { # off|on
	if [ "$1" = off ]; then
		psql_bench -tAc "SELECT pg_get_functiondef(p.oid) || ';' FROM pg_proc p
			WHERE p.proname IN ('emit_event', 'emit_event_data')" >"$OUT/outbox-functions.sql"
		psql_bench -c "CREATE OR REPLACE FUNCTION emit_event_data(p_partner uuid, p_type text,
			p_subject_type text, p_subject_id text, p_request_id text, p_data jsonb,
			p_occasion text DEFAULT NULL) RETURNS bigint LANGUAGE sql AS 'SELECT NULL::bigint'" \
			-c "CREATE OR REPLACE FUNCTION emit_event(p_partner uuid, p_type text,
			p_subject_type text, p_subject_id text, p_request_id text, p_extra jsonb DEFAULT NULL,
			p_occasion text DEFAULT NULL) RETURNS bigint LANGUAGE sql AS 'SELECT NULL::bigint'" >/dev/null
	else
		psql_bench -f "$OUT/outbox-functions.sql" >/dev/null
	fi
}
WC_LINE=""
if want writecost && route_exists "$(head -n1 "$OUT/seats.tsv")"; then
	for round in 1 2; do
		free_seats
		run_wrk "seat cycle, issue 17 triggers on ($round)" seats
		issue17_triggers DISABLE
		free_seats
		run_wrk "seat cycle, issue 17 triggers off ($round)" seats
		free_seats
		issue17_triggers ENABLE
		outbox off
		run_wrk "seat cycle, outbox off ($round)" seats
		free_seats
		outbox on
	done
	psql_bench -c "SELECT count(write_benefit_document(m.id)) FROM benefit_documents m
		JOIN benefits b ON b.id = m.id WHERE (m.used, m.status) IS DISTINCT FROM (b.used, b.status)" >/dev/null
	psql_bench -c "UPDATE partner_versions SET data_version = data_version + 1" >/dev/null
	read -r on off pct <<<"$(on_off "seat cycle, issue 17 triggers")"
	read -r _ obx obpct <<<"$(ratio_of "seat cycle, issue 17 triggers on" "seat cycle, outbox off")"
	WC_LINE="Seat cycle with issue 17's data-version and document triggers: $on req/s; without them: $off: with ÷ without = $pct %
Seat cycle without the events outbox (issue 12; emit_event made a no-op): $obx req/s: with ÷ without = $obpct %"
fi
CEIL_LINE=""
if want ceiling; then
	# The HTTP stack alone (bench/http_ceiling.c): Ulfius and libmicrohttpd as the service sets
	# them up, answering the warm lines with a 200 of the warm answers' mean size and the 304
	# lines with a 304, and nothing else. Alternated with the service's cache hits and 304s on
	# the same lines: its 304 ÷ 200 is the most any service on this stack can show.
	cmake --build "$MB_ROOT/build" --target http-ceiling >/dev/null || die "http-ceiling did not build"
	"$PY" bench/requests.py etags "$OUT/inm.tsv" "$URL" || die "reading the ETags failed"
	BODY=$(head -n 50 "$OUT/warm.tsv" | while IFS=$'\t' read -r _ p t _; do
		curl -s -o /dev/null -w '%{size_download}\n' -H "Authorization: Bearer $t" "$URL$p"
	done | awk '{ s += $1 } END { printf "%d", s / NR }')
	CEIL_PORT=$(free_port)
	setsid "$MB_ROOT/build/http-ceiling" "$CEIL_PORT" "$BODY" >"$OUT/http-ceiling.log" 2>&1 &
	CEIL_PID=$!
	wait_http "http://127.0.0.1:$CEIL_PORT/" 30 "$CEIL_PID" || die "http-ceiling did not come up"
	for round in 1 2; do
		run_wrk "service, cache hit ($round)" warm
		run_wrk "service, 304 ($round)" inm
		URL=http://127.0.0.1:$CEIL_PORT run_wrk "HTTP stack alone, 200 ($round)" warm
		URL=http://127.0.0.1:$CEIL_PORT run_wrk "HTTP stack alone, 304 ($round)" inm
	done
	stop_pid "$CEIL_PID" 5 || true
	CEIL_PID=""
	read -r s304 shit spct <<<"$(ratio_of "service, 304" "service, cache hit")"
	read -r c304 c200 cpct <<<"$(ratio_of "HTTP stack alone, 304" "HTTP stack alone, 200")"
	CEIL_LINE="304 ÷ 200 with $BODY-byte bodies: the HTTP stack alone $c304 ÷ $c200 req/s = $cpct %; the service (cache hits) $s304 ÷ $shit req/s = $spct %"
fi
RL_LINE=""
if want ratelimit; then
	# Same requests, same data, same moment: only the limiter differs (issue 15).
	OFF_PORT=$(free_port)
	RATE_LIMIT_PER_SUBJECT=0 RATE_LIMIT_PER_PARTNER=0 PORT=$OFF_PORT setsid "$BIN" serve \
		>"$OUT/service-nolimit.log" 2>&1 &
	OFF_PID=$!
	wait_http "http://127.0.0.1:$OFF_PORT/readyz" 30 "$OFF_PID" || die "the service without limits did not come up"
	curl -s -H "Authorization: Bearer $(head -n1 "$OUT/list.tsv" | cut -f3)" -D - -o /dev/null \
		"$URL$(head -n1 "$OUT/list.tsv" | cut -f2)" | grep -qi '^RateLimit-Policy:' ||
		die "the service under test sends no RateLimit-Policy: is its limiter on?"
	for round in 1 2; do
		run_wrk "list, rate limiter on ($round)" list
		URL=http://127.0.0.1:$OFF_PORT run_wrk "list, rate limiter off ($round)" list
	done
	stop_pid "$OFF_PID" 20 || warn "the service without limits did not exit 0"
	OFF_PID=""
	read -r on off pct <<<"$(on_off "list, rate limiter")"
	RL_LINE="Rate limiter (2 500 tokens of 2 500 partners): $on req/s on, $off off: on ÷ off = $pct %"
fi

curl -s "$URL/metrics" >"$OUT/metrics.txt" || true
RSS_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$SVC_PID/status")
if [ -n "$PERF_PID" ]; then
	kill -INT "$PERF_PID" 2>/dev/null || true
	wait "$PERF_PID" 2>/dev/null || true
	PERF_PID=""
	KEEP_TMP=1
fi
stop_pid "$SVC_PID" 20 || warn "the service did not exit 0"
SVC_PID=""

# PostgreSQL's own work per seat write, counted instead of timed (CPU seconds on a shared
# machine vary by more than the changes being weighed): a single-user backend, the cluster
# stopped, runs the seat cycle's statements (bench/seat_statements.py: prepared, generic plans,
# fixed ids) under valgrind's callgrind, once with issue 17's triggers and once without. Two
# runs of one database differ by under 0.5 %.
IN_LINE=""
count_instructions() { # NAME [SQL...] : instructions of 300 seat pairs
	"$PY" bench/seat_statements.py 300 "$OUT/seats-$1.sql" "${@:2}" || die "seat_statements.py failed"
	chmod 644 "$OUT/seats-$1.sql"
	pg_as valgrind --tool=callgrind --callgrind-out-file="$PG_TMP/callgrind-$1.out" \
		"$PG_BIN/postgres" --single -D "$PG_DATA" mpn <"$OUT/seats-$1.sql" \
		>"$OUT/single-$1.log" 2>"$OUT/valgrind-$1.log" || die "the single-user run failed ($OUT/valgrind-$1.log)"
	! grep -q ERROR "$OUT/single-$1.log" || die "a statement failed ($OUT/single-$1.log)"
	sed -n 's/.*I *refs: *//p' "$OUT/valgrind-$1.log" | tr -d ,
}
if want instructions; then
	ensure_packages profile
	pg_stop "$PG_DATA"
	log "callgrind: 300 seat pairs in a single-user backend, issue 17's triggers on, then off"
	IN_ON=$(count_instructions on)
	IN_OFF=$(count_instructions off "DO \$\$ DECLARE t record; BEGIN FOR t IN SELECT tgrelid::regclass AS rel, tgname FROM pg_trigger WHERE NOT tgisinternal AND (tgname LIKE '%bump_version' OR tgname LIKE '%documents') LOOP EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', t.rel, t.tgname); END LOOP; END \$\$;")
	[ -n "$IN_ON" ] && [ -n "$IN_OFF" ] || die "callgrind counted nothing ($OUT/valgrind-*.log)"
	IN_LINE="PostgreSQL's instructions per seat pair (assign + remove; callgrind, 300 pairs): $(
		awk -v a="$IN_ON" -v b="$IN_OFF" 'BEGIN { printf "%.2f million with issue 17'"'"'s triggers, %.2f million without: with ÷ without = %.0f %%", a / 3e8, b / 3e8, 100 * a / b }')"
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(awk '/MemTotal/ {printf "%.0f GB RAM", $2/1048576}' /proc/meminfo)"
{
	echo
	echo "mpn-benefits bench: $(date -u +%Y-%m-%dT%H:%MZ), $MACHINE; ${SECS}s per run, $CONN connections, $THR threads;" \
		"service pool $(sed -n 's/^mpn_db_pool_size //p' "$OUT/metrics.txt") connections;" \
		"sched_autogroup_enabled $AUTOGROUP;" \
		"load average before $LOAD_BEFORE, after $LOAD_AFTER"
	echo
	"$PY" bench/stats.py table "$OUT/results.jsonl" "$RSS_KB" "$OUT/metrics.txt"
	[ -n "$CEIL_LINE" ] && { echo; echo "$CEIL_LINE"; }
	[ -n "$RL_LINE" ] && { echo; echo "$RL_LINE"; }
	[ -n "$WC_LINE" ] && { echo; echo "$WC_LINE"; }
	[ -n "$IN_LINE" ] && { echo; echo "$IN_LINE"; }
	issue17_table
} | tee "$OUT/table.md"
