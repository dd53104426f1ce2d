#!/usr/bin/env bash
# Run mpn-benefits locally with the demo data: installs what is missing, builds (Release),
# starts a PostgreSQL cluster kept under var/pg between runs, migrates, seeds, serves on PORT,
# and prints a token per demo user plus a curl line. Ctrl-C stops the service and the
# PostgreSQL it started.
#
#   scripts/run.sh          env: PORT (8080), PGPORT (55432), JWT_SECRET, JWT_ISSUER,
#                                JWT_AUDIENCE, KEY_ENCRYPTION_KEY, CORS_ORIGINS, TOKEN_TTL (28800)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

export PORT=${PORT:-8080}
PGPORT=${PGPORT:-55432}
TOKEN_TTL=${TOKEN_TTL:-28800}
mb_dev_env
export CORS_ORIGINS=${CORS_ORIGINS:-http://localhost:3000,http://localhost:5173}

SVC_PID="" PG_STARTED=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$SVC_PID" ]; then
		log "stopping the service"
		stop_pid "$SVC_PID" 20 || true
	fi
	if [ -n "$PG_STARTED" ]; then
		log "stopping PostgreSQL"
		pg_stop "$PG_DATA" || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages build db run
build build -DCMAKE_BUILD_TYPE=Release -DSANITIZE=OFF -DFUZZ=OFF
BIN=$MB_ROOT/build/mpn-benefits

# --- PostgreSQL under var/pg ----------------------------------------------------------------
PG_HOME=$MB_ROOT/var/pg
mkdir -p "$MB_ROOT/var"
pg_prepare_dir "$PG_HOME"
if ! pg_reachable "$PG_HOME"; then
	# As root in a repo the postgres user cannot reach (e.g. under /root): keep it outside.
	rmdir "$PG_HOME" 2>/dev/null || true
	PG_HOME=/var/tmp/mpn-benefits-pg-$(printf '%s' "$MB_ROOT" | md5sum | cut -c1-8)
	warn "the postgres user cannot reach $MB_ROOT/var/pg: using $PG_HOME"
	pg_prepare_dir "$PG_HOME"
fi
PG_DATA=$PG_HOME/data
pg_init "$PG_DATA"
if pg_running "$PG_DATA"; then
	PGPORT=$(sed -n 4p "$PG_DATA/postmaster.pid")
	log "PostgreSQL already running on port $PGPORT ($PG_DATA): reusing it"
else
	log "PostgreSQL on 127.0.0.1:$PGPORT ($PG_DATA)"
	pg_start "$PG_DATA" "$PG_HOME/postgresql.log" "$(pg_opts "$PGPORT" "$PG_HOME")"
	PG_STARTED=1
fi
pg_createdb "$PG_HOME" "$PGPORT" mpn
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PGPORT/mpn"

log "migrate"
"$BIN" migrate
log "seed-demo"
"$BIN" seed-demo

# --- service --------------------------------------------------------------------------------
port_free "$PORT" || die "port $PORT is taken: PORT=8081 $0"
log "serving on http://localhost:$PORT"
DATABASE_URL=$(mb_service_url "$DATABASE_URL") "$BIN" serve &
SVC_PID=$!
wait_http "http://127.0.0.1:$PORT/healthz" 30 "$SVC_PID" || die "the service did not come up on port $PORT"

mint() { "$BIN" token --ttl "$TOKEN_TTL" "$@"; }
U=$MB_CONTOSO_USER_PREFIX
GA=$(mint --sub "${U}1" --partner "$MB_CONTOSO" --role global_admin)
UA=$(mint --sub "${U}2" --partner "$MB_CONTOSO" --role user_admin)
AA=$(mint --sub "${U}3" --partner "$MB_CONTOSO" --role admin_agent)
PA=$(mint --sub "${U}4" --partner "$MB_CONTOSO" --role mpn_partner_admin)
EMP=$(mint --sub "${U}5" --partner "$MB_CONTOSO" 2>/dev/null) || EMP="(the token subcommand wants a --role)"
FAB_GA=$(mint --sub "$MB_FABRIKAM_GA" --partner "$MB_FABRIKAM" --role global_admin)
OP=$(mint --sub operator-1 --role operator)

TOKENS=$MB_ROOT/var/tokens.env
cat >"$TOKENS" <<EOF
# Demo tokens (valid ${TOKEN_TTL}s), written by scripts/run.sh. Use: . var/tokens.env
export MB=http://localhost:$PORT
export GA='$GA'         # Contoso global_admin       ${U}1
export UA='$UA'         # Contoso user_admin         ${U}2
export AA='$AA'         # Contoso admin_agent        ${U}3
export PA='$PA'         # Contoso mpn_partner_admin  ${U}4
export EMP='$EMP'       # Contoso employee, no role  ${U}5
export FAB_GA='$FAB_GA' # Fabrikam (PMC) global_admin $MB_FABRIKAM_GA
export OP='$OP'         # operator-1, no partner
EOF
cat <<EOF

-------------------------------------------------------------------------------------------
mpn-benefits is up on http://localhost:$PORT (PostgreSQL 127.0.0.1:$PGPORT, data in $PG_DATA)
Contoso $MB_CONTOSO (Partner Center) · Fabrikam $MB_FABRIKAM (PMC)

$(grep '^export' "$TOKENS")

Tokens saved in var/tokens.env (. var/tokens.env). Try:
  curl -s -H "Authorization: Bearer \$GA" http://localhost:$PORT/v1/partners/$MB_CONTOSO/benefits
  curl -s http://localhost:$PORT/openapi.yaml | head
Ctrl-C stops the service${PG_STARTED:+ and PostgreSQL}.
-------------------------------------------------------------------------------------------

EOF

SVC_RC=0
wait "$SVC_PID" || SVC_RC=$?
SVC_PID=""
log "the service exited (status $SVC_RC)"
exit "$SVC_RC"
