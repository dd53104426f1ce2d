#!/usr/bin/env bash
# A mock of the API for consumers' CI: Prism (pinned in tests/contract) serves api/openapi.yaml
# with its examples, without PostgreSQL or the service. Answers are the contract's examples
# (or made from the schemas where an operation has none); requests are validated against the
# contract (a bad body gets Prism's 422), and `Prefer: code=404` / `Prefer: example=<name>`
# pick another documented answer. Installs what is missing (nodejs, npm ci in tests/contract).
#
#   scripts/mock.sh [PRISM_ARG...]     env: MOCK_PORT (4010), MOCK_HOST (127.0.0.1)
#   scripts/mock.sh --dynamic          answers generated from the schemas instead of examples
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_packages contract
NM=tests/contract/node_modules
stamp=$(cat tests/contract/package.json tests/contract/package-lock.json | sha256sum | cut -d' ' -f1)-$(node --version)
if [ "$(cat "$NM/.mb-stamp" 2>/dev/null)" != "$stamp" ]; then
	log "npm ci (tests/contract)"
	(cd tests/contract && NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
		die "npm ci failed in tests/contract"
	echo "$stamp" >"$NM/.mb-stamp"
fi
PORT=${MOCK_PORT:-4010} HOST=${MOCK_HOST:-127.0.0.1}
log "Prism mock of api/openapi.yaml on http://$HOST:$PORT (Ctrl-C stops it)"
# exec: Ctrl-C and a CI job's SIGTERM reach Prism itself.
exec "$MB_ROOT/$NM/.bin/prism" mock api/openapi.yaml --host "$HOST" --port "$PORT" "$@"
