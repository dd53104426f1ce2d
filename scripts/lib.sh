# shellcheck shell=bash disable=SC2034 # variables here are used by the scripts that source it
# Shared functions of scripts/run.sh and scripts/test.sh. Source it; it sets no shell options.
#
# Works on a pristine Debian 12 as root (installs what is missing with apt-get) and as a normal
# user with sudo. PostgreSQL refuses to run as root, so every cluster command runs as the
# `postgres` system user when we are root, and as ourselves otherwise.

MB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PY=/usr/bin/python3 # Debian's python, which has the python3-* packages (not a pyenv one)

# Dev/test defaults; run.sh and test.sh export them unless already set.
MB_DEFAULT_JWT_SECRET=dev-secret-change-me-0123456789abcdef
MB_DEFAULT_JWT_ISSUER=https://login.mpn.example
MB_DEFAULT_JWT_AUDIENCE=mpn-benefits
MB_DEFAULT_KEY_ENCRYPTION_KEY=demo-key-encryption-key

# Demo data of sql/demo/seed.sql.
MB_CONTOSO=11111111-1111-4111-8111-111111111111
MB_FABRIKAM=33333333-3333-4333-8333-333333333333
MB_CONTOSO_USER_PREFIX=22222222-2222-4222-8222-00000000000 # + 1..5
MB_FABRIKAM_GA=44444444-4444-4444-8444-000000000001

if [ -t 2 ]; then MB_B=$'\033[1m' MB_R=$'\033[1;31m' MB_N=$'\033[0m'; else MB_B="" MB_R="" MB_N=""; fi
log() { printf '%s==> %s%s\n' "$MB_B" "$*" "$MB_N" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

# as_root CMD... : run a command as root (directly, or through sudo).
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "not root and no sudo: cannot run '$*'"
	fi
}

# --- packages -------------------------------------------------------------------------------

MB_PKGS_BUILD="build-essential cmake pkg-config libulfius-dev liborcania-dev libyder-dev libjansson-dev libpq-dev libjwt-dev libmicrohttpd-dev"
MB_PKGS_DB="postgresql postgresql-contrib"
MB_PKGS_TEST="python3 python3-requests python3-jwt python3-cryptography python3-pytest python3-psycopg2 python3-yaml curl nginx"
MB_PKGS_RUN="python3 curl"
MB_PKGS_BENCH="python3 curl wrk postgresql-contrib"
MB_PKGS_CLUSTER="python3 curl nginx"
MB_PKGS_PROFILE="valgrind"

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# ensure_packages GROUP... : GROUP is build, db, test, run, bench, cluster, profile or
# contract. Installs only what is
# missing, runs `apt-get update` once and only if something is missing.
ensure_packages() {
	local want="" g p missing=""
	for g in "$@"; do
		case $g in
		build) want="$want $MB_PKGS_BUILD" ;;
		db) want="$want $MB_PKGS_DB" ;;
		test) want="$want $MB_PKGS_TEST" ;;
		run) want="$want $MB_PKGS_RUN" ;;
		bench) want="$want $MB_PKGS_BENCH" ;;
		cluster) want="$want $MB_PKGS_CLUSTER" ;;
		profile) want="$want $MB_PKGS_PROFILE" ;;
		contract)
			# Our build machines have Node 20 whose `nodejs` package already holds npm, and
			# `apt-get install npm` fails there: only ask apt when node or npm is missing.
			command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || want="$want nodejs npm"
			;;
		fuzz) want="$want $MB_PKGS_FUZZ" ;;
		ha) want="$want $MB_PKGS_HA" ;;
		container) want="$want $MB_PKGS_CONTAINER" ;;
		*) die "ensure_packages: unknown group $g" ;;
		esac
	done
	for p in $want; do
		case " $missing " in *" $p "*) continue ;; esac
		pkg_installed "$p" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	local out
	out=$(mktemp)
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$out" 2>&1 || {
		cat "$out" >&2
		rm -f "$out"
		die "apt-get update failed"
	}
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >"$out" 2>&1 || {
		tail -n 60 "$out" >&2
		rm -f "$out"
		die "apt-get install failed:$missing"
	}
	log "installed: $(grep -c '^Setting up ' "$out") packages"
	rm -f "$out"
}

# The contract fuzzer (tests/fuzz/contract_fuzz.py) runs in the test suite too: Hypothesis and
# jsonschema belong to the test group. Group fuzz (scripts/fuzz.sh): clang with its libFuzzer
# runtime, and valgrind.
MB_PKGS_TEST="$MB_PKGS_TEST python3-hypothesis python3-jsonschema"
MB_PKGS_FUZZ="clang libclang-rt-14-dev valgrind"
# Identity (issue 11): Rhonabwy reads JWKS keys, libcurl fetches the JWKS.
MB_PKGS_BUILD="$MB_PKGS_BUILD librhonabwy-dev libcurl4-gnutls-dev"
# Issue 12 (events): libcurl for webhook and mail delivery (the GnuTLS flavour: libulfius-dev
# depends on it), and a local SMTP sink for the mail tests.
MB_PKGS_TEST="$MB_PKGS_TEST python3-aiosmtpd"
# Group ha (scripts/ha.sh, tests/api/test_ha.py): Patroni and etcd from Debian. etcd-server's
# postinst starts a system etcd on the default ports; ha.sh runs its own on free loopback ports.
MB_PKGS_HA="patroni etcd-server etcd-client python3-etcd python3-psycopg2 postgresql nginx curl"
# Group container (scripts/image.sh): Debian's podman with runc, and debootstrap for the base image.
MB_PKGS_CONTAINER="podman runc debootstrap uidmap"

# --- build ----------------------------------------------------------------------------------

# build DIR [CMAKE_ARG...] : configure and build into DIR (relative to the repo).
build() {
	local dir=$1
	shift
	log "building $dir ($*)"
	cmake -S "$MB_ROOT" -B "$MB_ROOT/$dir" "$@" >/dev/null || die "cmake configure failed ($dir)"
	cmake --build "$MB_ROOT/$dir" -j "$(nproc 2>/dev/null || echo 2)" || die "build failed ($dir)"
	[ -x "$MB_ROOT/$dir/mpn-benefits" ] || die "build produced no $dir/mpn-benefits"
}

# --- the service under test ----------------------------------------------------------------

# mb_dev_env : export the development secrets and token claims (each value unless already set).
mb_dev_env() {
	export JWT_SECRET=${JWT_SECRET:-$MB_DEFAULT_JWT_SECRET}
	export JWT_ISSUER=${JWT_ISSUER:-$MB_DEFAULT_JWT_ISSUER}
	export JWT_AUDIENCE=${JWT_AUDIENCE:-$MB_DEFAULT_JWT_AUDIENCE}
	export KEY_ENCRYPTION_KEY=${KEY_ENCRYPTION_KEY:-$MB_DEFAULT_KEY_ENCRYPTION_KEY}
	# The service refuses these public development secrets unless MPN_DEMO=1.
	if [ "$JWT_SECRET" = "$MB_DEFAULT_JWT_SECRET" ] || [ "$KEY_ENCRYPTION_KEY" = "$MB_DEFAULT_KEY_ENCRYPTION_KEY" ]; then
		export MPN_DEMO=1
	fi
}

# mb_test_env : export the test configuration of the service (each value unless already set);
# DATABASE_URL comes from pg_temp_start.
mb_test_env() {
	export DATABASE_URL
	mb_dev_env
	export CORS_ORIGINS=${CORS_ORIGINS:-http://localhost:3000}
	export DB_POOL_SIZE=${DB_POOL_SIZE:-4}
	# Issue 12: webhook receivers of the tests listen on 127.0.0.1 over plain http, and the
	# test-only retry schedule and claim lease (README, Webhooks) keep the waits short.
	export WEBHOOK_ALLOW_PRIVATE=${WEBHOOK_ALLOW_PRIVATE:-1} WEBHOOK_ALLOW_HTTP=${WEBHOOK_ALLOW_HTTP:-1}
	export WEBHOOK_RETRY_SCHEDULE=${WEBHOOK_RETRY_SCHEDULE:-1,1,1,2,2,2,2}
	export WEBHOOK_CLAIM_SECONDS=${WEBHOOK_CLAIM_SECONDS:-12} SCHEDULER_INTERVAL_SECONDS=${SCHEDULER_INTERVAL_SECONDS:-1}
	# The mail tests start their SMTP sink (python3-aiosmtpd) on this port when they need it.
	if [ -z "${SMTP_URL:-}" ]; then
		SMTP_URL=smtp://127.0.0.1:$(free_port)
		export SMTP_URL
	fi
	export MAIL_FROM=${MAIL_FROM:-benefits@mpn.example}
}

# mb_service_url URL : the same database as the superuser URL URL, as the service's own role
# (sql/006_service_role.sql: rows only, no DDL, no superuser).
mb_service_url() { printf '%s\n' "${1/:\/\/postgres@/://mpn_service@}"; }

# --- small utilities ------------------------------------------------------------------------

# free_port : print a TCP port that is free on 127.0.0.1 right now.
free_port() {
	"$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_free PORT : is nothing listening on 127.0.0.1:PORT?
port_free() {
	"$PY" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# wait_http URL [TIMEOUT_S] [PID] : poll until URL answers 200. Fails early when PID (the
# process that should answer) has died.
wait_http() {
	local url=$1 timeout=${2:-30} pid=${3:-} end code
	end=$((SECONDS + timeout))
	while [ "$SECONDS" -lt "$end" ]; do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null) || true
		[ "$code" = 200 ] && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			warn "process $pid died while waiting for $url"
			return 1
		fi
		sleep 0.2
	done
	warn "$url did not answer 200 within ${timeout}s (last: ${code:-none})"
	return 1
}

# stop_pid PID [TIMEOUT_S] : SIGTERM, wait, SIGKILL if needed. Returns the exit status.
stop_pid() {
	local pid=$1 timeout=${2:-20} i rc=0
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || rc=$?
		return "$rc"
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "process $pid ignored SIGTERM for ${timeout}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

# --- PostgreSQL -----------------------------------------------------------------------------

# The OS user the cluster runs as.
pg_os_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }

# pg_as CMD... : run a command as the cluster's OS user.
pg_as() {
	if [ "$(id -u)" = 0 ]; then
		# from / : the postgres user may not be allowed into our working directory
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# pg_prepare_dir DIR : create DIR and hand it to the cluster's OS user.
pg_prepare_dir() {
	mkdir -p "$1"
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$1"
	return 0
}

# pg_reachable DIR : can the cluster's OS user create files in DIR (all parents traversable)?
pg_reachable() { pg_as test -w "$1" -a -x "$1"; }

# pg_init DATADIR : initdb once (trust auth, superuser `postgres`).
pg_init() {
	local data=$1
	[ -f "$data/PG_VERSION" ] && return 0
	[ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb missing (package postgresql)"
	log "initdb $data"
	pg_prepare_dir "$data"
	pg_as "$PG_BIN/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-locale >"$data.initdb.log" 2>&1 || {
		cat "$data.initdb.log" >&2
		die "initdb failed"
	}
}

# pg_opts PORT SOCKDIR [fast] : the server options (-o of pg_ctl). `fast` trades durability
# for speed (throwaway test clusters only).
pg_opts() {
	local o="-c listen_addresses=127.0.0.1 -c port=$1 -c unix_socket_directories=$2 -c max_connections=200"
	[ "${3:-}" = fast ] && o="$o -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	echo "$o"
}

# pg_start DATADIR LOGFILE OPTS : start the cluster and wait until it accepts connections.
pg_start() {
	local data=$1 logfile=$2 opts=$3
	# setsid: a Ctrl-C in the terminal must not reach the postmaster (SIGINT = fast shutdown)
	# before our cleanup has stopped the service.
	pg_as setsid "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -o "$opts" -w -t 60 start >/dev/null || {
		tail -n 30 "$logfile" >&2 2>/dev/null
		die "PostgreSQL did not start ($data)"
	}
}

# pg_running DATADIR : is a postmaster running on DATADIR?
pg_running() { [ -f "$1/postmaster.pid" ] && pg_as "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

# pg_stop DATADIR : fast shutdown (no-op when not running).
pg_stop() {
	local data=$1
	pg_running "$data" || return 0
	pg_as "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null ||
		warn "pg_ctl stop failed for $data"
}

# pg_createdb SOCKDIR PORT NAME : create database NAME when missing.
pg_createdb() {
	local sock=$1 port=$2 name=$3
	if [ "$(pg_psql "$sock" "$port" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
		pg_psql "$sock" "$port" postgres -qc "CREATE DATABASE \"$name\"" || die "CREATE DATABASE $name failed"
	fi
}

# pg_psql SOCKDIR PORT DB ARGS... : psql as the database superuser.
pg_psql() {
	local sock=$1 port=$2 db=$3
	shift 3
	"$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d "$db" "$@"
}

# pg_temp_start : a throwaway cluster on a free port in a new temp dir. Sets PG_TMP (the dir,
# also the socket dir), PG_DATA, PG_PORT, PG_SOCK, PG_LOG, PG_OPTS, DATABASE_URL (db `mpn`).
pg_temp_start() {
	# /tmp, not $TMPDIR: the postgres user must be able to reach the directory.
	PG_TMP=$(mktemp -d /tmp/mb-pg.XXXXXX) || die "mktemp failed"
	pg_prepare_dir "$PG_TMP"
	PG_DATA=$PG_TMP/data
	PG_SOCK=$PG_TMP
	PG_LOG=$PG_TMP/postgresql.log
	PG_PORT=$(free_port)
	PG_OPTS=$(pg_opts "$PG_PORT" "$PG_SOCK" fast)
	pg_init "$PG_DATA"
	log "PostgreSQL on 127.0.0.1:$PG_PORT ($PG_DATA)"
	pg_start "$PG_DATA" "$PG_LOG" "$PG_OPTS"
	pg_createdb "$PG_SOCK" "$PG_PORT" mpn
	DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/mpn"
}

# pg_temp_stop : stop and delete the cluster of pg_temp_start (safe to call twice).
pg_temp_stop() {
	[ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP" ] || return 0
	pg_stop "$PG_DATA"
	rm -rf "$PG_TMP"
	PG_TMP=
}

# --- nginx ----------------------------------------------------------------------------------

# nginx_conf DIR PORT UPSTREAM_PORT... : write DIR/nginx.conf from docker/nginx-cluster.conf.tmpl
# (nginx on 127.0.0.1:PORT in front of 127.0.0.1:UPSTREAM_PORT...), with its temp dirs.
nginx_conf() {
	local dir=$1 port=$2 ups="" p
	shift 2
	for p in "$@"; do ups="$ups        server 127.0.0.1:$p max_fails=1 fail_timeout=5s;\n"; done
	mkdir -p "$dir/tmp"
	# nginx's workers run as nobody when we are root: let them write their temp files.
	chmod 1777 "$dir/tmp"
	# NGINX_ADDRESS_RATE/_BURST: the limit per client address (docker/nginx.conf; all local here)
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@PROXY_CONF@|$MB_ROOT/docker/nginx-proxy.conf|g" \
		-e "s|@ADDRESS_RATE@|${NGINX_ADDRESS_RATE:-1000}|g" -e "s|@ADDRESS_BURST@|${NGINX_ADDRESS_BURST:-2000}|g" \
		-e "s|@UPSTREAMS@|${ups%\\n}|g" "$MB_ROOT/docker/nginx-cluster.conf.tmpl" >"$dir/nginx.conf"
}
