#!/usr/bin/env bash
# The docker/compose.yaml topology with local processes: one PostgreSQL (throwaway, temp dir),
# migrate + demo data, N service replicas on their own ports, and nginx in front of them
# (generated from docker/nginx-cluster.conf.tmpl + docker/nginx-proxy.conf, the same proxy
# settings as compose). Prints the URL and demo tokens; Ctrl-C stops everything.
#
#   scripts/cluster.sh [-n REPLICAS]     env: CLUSTER_PORT (nginx; default: a free port),
#                                        JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, KEY_ENCRYPTION_KEY,
#                                        DB_POOL_SIZE (per replica, default 8), BUILD_DIR (build)
# Try it: kill -9 one replica's pid (printed) and keep calling the URL; nginx skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

N=3
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?-n needs a number}; shift 2 ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
case $N in '' | *[!0-9]* | 0) die "-n wants a positive number" ;; esac

PIDS=() NGINX_PID="" WORK="" PG_TMP=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	[ -n "$NGINX_PID" ] && { stop_pid "$NGINX_PID" 10 || true; }
	for p in "${PIDS[@]}"; do [ -n "$p" ] && { stop_pid "$p" 20 || warn "replica $p did not exit 0"; }; done
	pg_temp_stop || true
	[ -n "$WORK" ] && rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages build db cluster
BUILD_DIR=${BUILD_DIR:-build}
build "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSANITIZE=OFF -DFUZZ=OFF
BIN=$MB_ROOT/$BUILD_DIR/mpn-benefits
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx missing"

pg_temp_start
export DATABASE_URL
mb_dev_env
export DB_POOL_SIZE=${DB_POOL_SIZE:-8}
log "migrate (once, like compose's migrate job) + demo data"
"$BIN" migrate >/dev/null
"$BIN" seed-demo >/dev/null

WORK=$(mktemp -d /tmp/mb-cluster.XXXXXX)
chmod 755 "$WORK"
PORTS=()
for ((i = 1; i <= N; i++)); do
	port=$(free_port)
	DATABASE_URL=$(mb_service_url "$DATABASE_URL") PORT=$port "$BIN" serve >"$WORK/replica-$i.log" 2>&1 &
	PIDS+=($!)
	PORTS+=("$port")
done
for ((i = 0; i < N; i++)); do
	wait_http "http://127.0.0.1:${PORTS[i]}/readyz" 30 "${PIDS[i]}" ||
		die "replica $((i + 1)) did not come up: $(tail -n 5 "$WORK/replica-$((i + 1)).log")"
done

LB_PORT=${CLUSTER_PORT:-$(free_port)}
port_free "$LB_PORT" || die "port $LB_PORT is taken"
nginx_conf "$WORK" "$LB_PORT" "${PORTS[@]}"
"$NGINX" -t -q -e "$WORK/error.log" -p "$WORK" -c "$WORK/nginx.conf" || die "nginx -t failed ($WORK/error.log)"
"$NGINX" -e "$WORK/error.log" -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
wait_http "http://127.0.0.1:$LB_PORT/readyz" 10 "$NGINX_PID" || die "nginx did not come up ($WORK/error.log)"

GA=$("$BIN" token --ttl 28800 --sub "${MB_CONTOSO_USER_PREFIX}1" --partner "$MB_CONTOSO" --role global_admin)
cat <<EOT

-------------------------------------------------------------------------------------------
mpn-benefits cluster: http://127.0.0.1:$LB_PORT  (nginx pid $NGINX_PID, logs in $WORK)
$(for ((i = 0; i < N; i++)); do echo "  replica $((i + 1)): http://127.0.0.1:${PORTS[i]}  pid ${PIDS[i]}"; done)
  PostgreSQL: $DATABASE_URL

  export GA='$GA'
  curl -s -H "Authorization: Bearer \$GA" http://127.0.0.1:$LB_PORT/v1/partners/$MB_CONTOSO/benefits
Ctrl-C stops nginx, the replicas (SIGTERM: they drain) and PostgreSQL.
-------------------------------------------------------------------------------------------

EOT
# Keep running until Ctrl-C; report a replica or nginx that dies meanwhile.
while kill -0 "$NGINX_PID" 2>/dev/null; do
	for ((i = 0; i < N; i++)); do
		if [ -n "${PIDS[i]}" ] && ! kill -0 "${PIDS[i]}" 2>/dev/null; then
			rc=0
			wait "${PIDS[i]}" 2>/dev/null || rc=$?
			warn "replica $((i + 1)) (pid ${PIDS[i]}) exited with status $rc; nginx skips it"
			PIDS[i]=""
		fi
	done
	sleep 1
done
die "nginx exited ($WORK/error.log)"
