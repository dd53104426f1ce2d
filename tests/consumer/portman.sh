#!/usr/bin/env bash
# CI step of scripts/test.sh (issue 18): the consumer suite (consumer-suite.sh: Portman +
# Newman, generated from api/openapi.yaml) against the service on THROWAWAY demo data: a fresh
# database `mpn_consumer` on the test run's PostgreSQL, migrated and seeded, its own service
# process (the ASan build), demo tokens minted by `mpn-benefits token`. Afterwards the service
# must exit 0 on SIGTERM with no sanitizer report, and the database is dropped.
#
#   tests/consumer/portman.sh LOGDIR      (env of scripts/test.sh: MB_BIN, MB_PGSOCK, MB_PGPORT,
#                                          JWT_*, KEY_ENCRYPTION_KEY…)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/../../scripts/lib.sh"
LOGDIR=$1
OUT=$LOGDIR/consumer
mkdir -p "$OUT"
: "${MB_BIN:?}" "${MB_PGSOCK:?}" "${MB_PGPORT:?}"
START=$SECONDS
DB=mpn_consumer
SVC=""
finish() {
	local rc=$?
	[ -n "$SVC" ] && { stop_pid "$SVC" 10 || true; }
	pg_psql "$MB_PGSOCK" "$MB_PGPORT" postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	exit "$rc"
}
trap finish EXIT

bash "$HERE/npm-ci.sh"
pg_psql "$MB_PGSOCK" "$MB_PGPORT" postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
pg_createdb "$MB_PGSOCK" "$MB_PGPORT" "$DB"
URL="postgresql://postgres@127.0.0.1:$MB_PGPORT/$DB"
for step in migrate seed-demo; do
	DATABASE_URL=$URL "$MB_BIN" "$step" >>"$OUT/setup.log" 2>&1 || {
		tail -n 20 "$OUT/setup.log" >&2
		die "consumer suite: $step of the throwaway database failed"
	}
done
echo "consumer suite: throwaway database ready in $((SECONDS - START))s"
PORT=$(free_port)
DATABASE_URL=$(mb_service_url "$URL") PORT=$PORT "$MB_BIN" serve >"$OUT/service-consumer.log" 2>&1 &
SVC=$!
wait_http "http://127.0.0.1:$PORT/healthz" 30 "$SVC" || die "consumer suite: the service did not come up"

mint() { "$MB_BIN" token --ttl 900 "$@"; }
GA_TOKEN=$(mint --sub "${MB_CONTOSO_USER_PREFIX}1" --partner "$MB_CONTOSO" --role global_admin)
OPERATOR_TOKEN=$(mint --sub operator-1 --role operator)
OTHER_PARTNER_TOKEN=$(mint --sub "$MB_FABRIKAM_GA" --partner "$MB_FABRIKAM" --role global_admin)
export GA_TOKEN OPERATOR_TOKEN OTHER_PARTNER_TOKEN

rc=0
bash "$HERE/consumer-suite.sh" "http://127.0.0.1:$PORT" "$OUT" || rc=$?

svc_rc=0
stop_pid "$SVC" 30 || svc_rc=$?
SVC=""
if [ "$svc_rc" != 0 ]; then
	echo "consumer suite: the service exited $svc_rc on SIGTERM" >&2
	rc=1
fi
if grep -E -m1 -A30 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$OUT/service-consumer.log" >&2; then
	echo "consumer suite: sanitizer report in $OUT/service-consumer.log" >&2
	rc=1
fi
echo "consumer suite: $((SECONDS - START))s (logs in $OUT)"
exit "$rc"
