#!/usr/bin/env bash
# A/B of the write path's SQL (issue 17, sql/012_write_path.sql): the seat cycle's transactions
# (bench/pgbench/seats_tx.sql, which fire every data-version trigger) with bump_partner as
# sql/007 made it (A) and as sql/012 makes it (B), alternated ROUNDS times on one throwaway
# PostgreSQL with the data of bench/data.sql, so both see the same machine state.
#
#   bench/write_ab.sh        env: AB_SECONDS (15) per run, AB_ROUNDS (3); run scripts/bench.sh once first (build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SECS=${AB_SECONDS:-15}
ROUNDS=${AB_ROUNDS:-3}
BIN=$MB_ROOT/build/mpn-benefits
[ -x "$BIN" ] || die "build first (scripts/bench.sh)"
PGBENCH=$PG_BIN/pgbench
PG_TMP=""
SQLDIR=$(mktemp -d /tmp/mb-ab-sql.XXXXXX)
trap 'pg_temp_stop || true; rm -rf "$SQLDIR"' EXIT
cp -r sql/. "$SQLDIR"/
rm "$SQLDIR/012_write_path.sql"
pg_temp_start
export DATABASE_URL
mb_dev_env
MPN_SQL_DIR=$SQLDIR "$BIN" migrate >/dev/null
MPN_SQL_DIR=$SQLDIR "$BIN" seed-demo >/dev/null
psql_ab() { pg_psql "$PG_SOCK" "$PG_PORT" mpn -q "$@"; }
psql_ab -v kek="$KEY_ENCRYPTION_KEY" -v keys_partners=10 -f bench/data.sql >/dev/null
psql_ab -tAc "SELECT pg_get_functiondef('bump_partner(uuid,boolean)'::regprocedure)" >"$SQLDIR/A.sql"
echo ";" >>"$SQLDIR/A.sql"
for r in $(seq "$ROUNDS"); do
	for v in A B; do
		if [ $v = A ]; then psql_ab -f "$SQLDIR/A.sql"; else psql_ab -f sql/012_write_path.sql; fi
		psql_ab -c "DELETE FROM seat_assignments WHERE user_id::text LIKE 'b1000000-%'" >/dev/null
		tps=$("$PGBENCH" -n -M prepared -c 32 -j 2 -T "$SECS" -D clients=32 -f bench/pgbench/seats_tx.sql \
			-h 127.0.0.1 -p "$PG_PORT" -U postgres mpn 2>&1 | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
		echo "round $r $v: seat cycle $(awk -v t="$tps" 'BEGIN {printf "%.0f", t * 2}') req/s (pgbench, same transactions); load $(cut -d' ' -f1 /proc/loadavg)"
	done
done
