#!/usr/bin/env bash
# PostgreSQL high availability on one machine (issue 16): one etcd member, three PostgreSQL 15
# instances managed by Patroni (Debian's `patroni` and `etcd-server`; loopback ports, their own
# data directories, synchronous replication: a commit acknowledged to the service is on two
# nodes), migrate + demo data through the leader, N service replicas whose DATABASE_URL lists
# every node with target_session_attrs=read-write, and nginx in front (like scripts/cluster.sh).
# Prints the URL, the members and the commands to try a failover; Ctrl-C stops everything.
#
#   scripts/ha.sh [-n REPLICAS] [--env-file FILE]
#     -n            service replicas (default 2)
#     --env-file    when everything is up, write KEY=VALUE lines there (tests/api/test_ha.py)
#   env: BIN (a built mpn-benefits: no build), HA_PORT (nginx; default a free port),
#        HA_LOG_DIR (replica logs, named service-ha-<i>.log; default the work dir),
#        HA_FAST=1 (fsync=off: throwaway clusters only), DB_POOL_SIZE (per replica, default 4),
#        JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, KEY_ENCRYPTION_KEY.
#
# Try a failover: kill -9 the leader's postmaster (pid printed) and watch
#   patronictl -c <work>/pg1/patroni.yml list
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

N=2 ENV_FILE=""
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=${2:?-n needs a number}; shift 2 ;;
	--env-file) ENV_FILE=${2:?--env-file needs a path}; shift 2 ;;
	-h | --help) sed -n '2,19p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
case $N in '' | *[!0-9]* | 0) die "-n wants a positive number" ;; esac

ETCD_PID="" NGINX_PID="" WORK="" PATRONI_PIDS=() PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local rc=$? p i
	trap - EXIT INT TERM
	[ -n "$NGINX_PID" ] && { stop_pid "$NGINX_PID" 10 || true; }
	for p in "${PIDS[@]}"; do
		[ -n "$p" ] && { stop_pid "$p" 20 || { warn "replica $p did not exit 0"; rc=1; }; }
	done
	# Patroni stops its PostgreSQL on SIGTERM; replicas first, so that the leader's last
	# checkpoint does not wait for them.
	for ((i = ${#PATRONI_PIDS[@]} - 1; i >= 0; i--)); do
		if [ -n "${PATRONI_PIDS[i]}" ]; then kill -TERM "${PATRONI_PIDS[i]}" 2>/dev/null || true; fi
	done
	for p in "${PATRONI_PIDS[@]}"; do [ -n "$p" ] && { stop_pid "$p" 30 || true; }; done
	if [ -n "$WORK" ]; then
		# A PostgreSQL left behind by a Patroni that had to be killed.
		for i in 1 2 3; do
			[ -f "$WORK/pg$i/data/postmaster.pid" ] &&
				pg_as "$PG_BIN/pg_ctl" -D "$WORK/pg$i/data" -m immediate -w -t 20 stop >/dev/null 2>&1
		done
	fi
	[ -n "$ETCD_PID" ] && { stop_pid "$ETCD_PID" 10 || true; }
	[ -n "$WORK" ] && [ -z "${KEEP_TMP:-}" ] && rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 0' TERM # a stop that was asked for: the status says whether the cleanup went well

ensure_packages build db cluster ha
if [ -z "${BIN:-}" ]; then
	build build -DCMAKE_BUILD_TYPE=Release -DSANITIZE=OFF -DFUZZ=OFF
	BIN=$MB_ROOT/build/mpn-benefits
fi
[ -x "$BIN" ] || die "no service binary at $BIN"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PATRONI=$(command -v patroni || echo /usr/bin/patroni)
PATRONICTL=$(command -v patronictl || echo /usr/bin/patronictl)
ETCD=$(command -v etcd || echo /usr/bin/etcd)
for x in "$NGINX" "$PATRONI" "$PATRONICTL" "$ETCD"; do [ -x "$x" ] || die "$x missing"; done

# /tmp, not $TMPDIR: the postgres user must be able to reach it.
WORK=$(mktemp -d /tmp/mb-ha.XXXXXX)
chmod 755 "$WORK"
LOGS=${HA_LOG_DIR:-$WORK}

# pg_exec CMD... : exec CMD as the cluster's OS user, keeping our pid (no runuser fork: the
# pid we signal is Patroni's own).
pg_exec() {
	if [ "$(id -u)" = 0 ]; then
		cd / && exec setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$WORK" "$@"
	else
		exec "$@"
	fi
}

# --- etcd -----------------------------------------------------------------------------------
ETCD_PORT=$(free_port) ETCD_PEER=$(free_port)
ETCD_URL=http://127.0.0.1:$ETCD_PORT
mkdir -p "$WORK/etcd"
chmod 700 "$WORK/etcd"
log "etcd on $ETCD_URL"
"$ETCD" --name mb-ha --data-dir "$WORK/etcd/data" \
	--listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
	--initial-cluster "mb-ha=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state new \
	--initial-cluster-token "mb-ha-$$" >"$WORK/etcd/etcd.log" 2>&1 &
ETCD_PID=$!
wait_http "$ETCD_URL/health" 30 "$ETCD_PID" || die "etcd did not come up ($(tail -n 5 "$WORK/etcd/etcd.log"))"

# --- Patroni + PostgreSQL -------------------------------------------------------------------
FSYNC=on
[ "${HA_FAST:-}" = 1 ] && FSYNC=off
REPL_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
PG_PORTS=() REST_PORTS=()
for i in 1 2 3; do
	PG_PORTS+=("$(free_port)")
	REST_PORTS+=("$(free_port)")
done
for i in 1 2 3; do
	d=$WORK/pg$i
	pg_prepare_dir "$d"
	chmod 700 "$d"
	cat >"$d/patroni.yml" <<EOF
scope: mb-ha
name: pg$i
log:
  level: INFO
  dir: $d
restapi:
  listen: 127.0.0.1:${REST_PORTS[i - 1]}
  connect_address: 127.0.0.1:${REST_PORTS[i - 1]}
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    # Fast detection on one machine: the leader key lives 20 s, Patroni loops every second.
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    # A crashed primary is not restarted in place: fail over to the synchronous standby at once.
    master_start_timeout: 0
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: 'on'
        max_connections: 200
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        hot_standby: 'on'
        synchronous_commit: 'on'
        fsync: '$FSYNC'
  initdb:
    - encoding: UTF8
    - no-locale
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${PG_PORTS[i - 1]}
  connect_address: 127.0.0.1:${PG_PORTS[i - 1]}
  data_dir: $d/data
  bin_dir: $PG_BIN
  pgpass: $d/pgpass
  authentication:
    superuser:
      username: postgres
      password: '$REPL_PASSWORD'
    replication:
      username: replicator
      password: '$REPL_PASSWORD'
    rewind:
      username: postgres
      password: '$REPL_PASSWORD'
  parameters:
    unix_socket_directories: '$d'
EOF
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$d/patroni.yml"
	chmod 600 "$d/patroni.yml"
	(pg_exec "$PATRONI" "$d/patroni.yml") >"$d/patroni.out" 2>&1 &
	PATRONI_PIDS+=($!)
done

# cluster_state : "<leader>/<sync standbys>/<running members>" from Patroni's REST API.
cluster_state() {
	local p
	for p in "${REST_PORTS[@]}"; do
		curl -s -m 2 "http://127.0.0.1:$p/cluster" 2>/dev/null | "$PY" -c 'import json, sys
m = json.load(sys.stdin)["members"]
ok = ("running", "streaming")
print(sum(1 for x in m if x["role"] == "leader" and x["state"] in ok),
      sum(1 for x in m if x["role"] == "sync_standby" and x["state"] in ok),
      sum(1 for x in m if x["state"] in ok), sep="/")' 2>/dev/null && return 0
	done
	echo "0/0/0"
}

log "Patroni: 3 members (REST ${REST_PORTS[*]}, PostgreSQL ${PG_PORTS[*]}), waiting for a leader and a synchronous standby"
end=$((SECONDS + 120))
while [ "$(cluster_state)" != 1/1/3 ]; do
	for i in 0 1 2; do
		kill -0 "${PATRONI_PIDS[i]}" 2>/dev/null ||
			die "patroni pg$((i + 1)) exited: $(tail -n 20 "$WORK/pg$((i + 1))/patroni.out")"
	done
	[ "$SECONDS" -lt "$end" ] || die "no healthy cluster after 120 s (state $(cluster_state)); logs in $WORK/pg*/"
	sleep 0.5
done

HOSTS=""
for p in "${PG_PORTS[@]}"; do
	HOSTS="$HOSTS,127.0.0.1:$p"
done
# Superuser and schema owner, as in scripts/cluster.sh; the lead's service role changes the user.
ADMIN_URL="postgresql://postgres@${HOSTS#,}/postgres?target_session_attrs=read-write&connect_timeout=2"
DATABASE_URL="postgresql://postgres@${HOSTS#,}/mpn?target_session_attrs=read-write&connect_timeout=2"
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "CREATE DATABASE mpn" ||
	die "CREATE DATABASE mpn failed"
# libpq does not try the next host after a server's FATAL answer (here: no such database on a
# replica that has not replayed the CREATE DATABASE yet): wait until every node has it.
for p in "${PG_PORTS[@]}"; do
	end=$((SECONDS + 30))
	until [ "$("$PG_BIN/psql" -X -tA "postgresql://postgres@127.0.0.1:$p/postgres" \
		-c "SELECT 1 FROM pg_database WHERE datname = 'mpn'" 2>/dev/null)" = 1 ]; do
		[ "$SECONDS" -lt "$end" ] || die "database mpn did not reach the node on port $p"
		sleep 0.2
	done
done
export DATABASE_URL
mb_dev_env
export DB_POOL_SIZE=${DB_POOL_SIZE:-4}
log "migrate + demo data through the leader"
"$BIN" migrate >"$WORK/migrate.log" 2>&1 || die "migrate failed: $(tail -n 20 "$WORK/migrate.log")"
"$BIN" seed-demo >>"$WORK/migrate.log" 2>&1 || die "seed-demo failed: $(tail -n 20 "$WORK/migrate.log")"

# --- service replicas + nginx ---------------------------------------------------------------
SVC_PORTS=()
for ((i = 1; i <= N; i++)); do
	port=$(free_port)
	PORT=$port "$BIN" serve >"$LOGS/service-ha-$i.log" 2>&1 &
	PIDS+=($!)
	SVC_PORTS+=("$port")
done
for ((i = 0; i < N; i++)); do
	wait_http "http://127.0.0.1:${SVC_PORTS[i]}/readyz" 30 "${PIDS[i]}" ||
		die "replica $((i + 1)) did not come up: $(tail -n 5 "$LOGS/service-ha-$((i + 1)).log")"
done
LB_PORT=${HA_PORT:-$(free_port)}
port_free "$LB_PORT" || die "port $LB_PORT is taken"
nginx_conf "$WORK" "$LB_PORT" "${SVC_PORTS[@]}"
"$NGINX" -t -q -e "$WORK/error.log" -p "$WORK" -c "$WORK/nginx.conf" || die "nginx -t failed ($WORK/error.log)"
"$NGINX" -e "$WORK/error.log" -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
wait_http "http://127.0.0.1:$LB_PORT/readyz" 10 "$NGINX_PID" || die "nginx did not come up ($WORK/error.log)"

if [ -n "$ENV_FILE" ]; then
	{
		echo "HA_DIR=$WORK"
		echo "HA_URL=http://127.0.0.1:$LB_PORT"
		echo "HA_DATABASE_URL=$DATABASE_URL"
		echo "HA_ETCD_URL=$ETCD_URL"
		echo "HA_PATRONICTL=$PATRONICTL"
		echo "HA_PATRONI_CONFIG=$WORK/pg1/patroni.yml"
		echo "HA_REST_PORTS=${REST_PORTS[*]}"
		echo "HA_PG_PORTS=${PG_PORTS[*]}"
		echo "HA_REPLICA_URLS=$(for p in "${SVC_PORTS[@]}"; do printf 'http://127.0.0.1:%s ' "$p"; done)"
		echo "HA_REPLICA_PIDS=${PIDS[*]}"
	} >"$ENV_FILE.tmp"
	mv "$ENV_FILE.tmp" "$ENV_FILE"
fi

cat <<EOT

-------------------------------------------------------------------------------------------
mpn-benefits HA: http://127.0.0.1:$LB_PORT  (nginx pid $NGINX_PID, work dir $WORK)
$(for ((i = 0; i < N; i++)); do echo "  replica $((i + 1)): http://127.0.0.1:${SVC_PORTS[i]}  pid ${PIDS[i]}"; done)
  DATABASE_URL=$DATABASE_URL
  etcd: $ETCD_URL
$("$PATRONICTL" -c "$WORK/pg1/patroni.yml" list 2>/dev/null | sed 's/^/  /')

  Fail over:   kill -9 \$(head -n1 $WORK/pg<N>/data/postmaster.pid)   (the leader's N)
  Switch over: $PATRONICTL -c $WORK/pg1/patroni.yml switchover --force
Ctrl-C stops nginx, the replicas, Patroni (and its PostgreSQL) and etcd.
-------------------------------------------------------------------------------------------

EOT
# Keep running until Ctrl-C / SIGTERM; report a process that dies meanwhile.
while kill -0 "$NGINX_PID" 2>/dev/null && kill -0 "$ETCD_PID" 2>/dev/null; do
	for ((i = 0; i < N; i++)); do
		if [ -n "${PIDS[i]}" ] && ! kill -0 "${PIDS[i]}" 2>/dev/null; then
			rc=0
			wait "${PIDS[i]}" 2>/dev/null || rc=$?
			warn "replica $((i + 1)) (pid ${PIDS[i]}) exited with status $rc"
			PIDS[i]=""
		fi
	done
	sleep 1 &
	wait $! || true
done
die "nginx or etcd exited ($WORK)"
