#!/bin/sh
# Patroni's post_bootstrap: once, on the first leader. The schema owner `mpn` (it runs the
# migrations; the service's own restricted role is created by a migration) and its database.
# $1 is a libpq connection string to the new cluster as the superuser.
set -eu
: "${MPN_DB_PASSWORD:?MPN_DB_PASSWORD must be set}"
psql -X -v ON_ERROR_STOP=1 -v pw="$MPN_DB_PASSWORD" "$1" <<'SQL'
CREATE ROLE mpn LOGIN PASSWORD :'pw';
CREATE DATABASE mpn OWNER mpn;
SQL
