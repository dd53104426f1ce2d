#!/usr/bin/env bash
# The consumer-facing checks of issue 15 (tooling pinned in tests/docs/package.json):
#
#   scripts/checks/docs.sh install          apt chromium when missing; npm ci in tests/docs (cached
#                                           by a stamp); every package must accept Node 18.20
#   scripts/checks/docs.sh lint             Redocly recommended-strict (tests/docs/redocly.yaml);
#                                           the OWASP rules run in tests/contract/lint.sh
#   scripts/checks/docs.sh types            openapi-typescript types of api/openapi.yaml, then
#                                           tsc --noEmit on tests/docs/consumer.ts
#   scripts/checks/docs.sh breaking         api/openapi.yaml against api/released/v1.yaml
#   scripts/checks/docs.sh browser URL DIR  GET URL/docs in headless Chromium; screenshot DIR/docs.png
#
# Each exits non-zero on a failure; scripts/test.sh runs them all.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
D=tests/docs
BIN=$D/node_modules/.bin
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

case ${1:-} in
install)
	ensure_packages contract
	if ! command -v chromium >/dev/null 2>&1; then
		log "installing chromium"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || die "apt-get update failed"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null ||
			die "apt-get install chromium failed"
	fi
	stamp=$(cat $D/package.json $D/package-lock.json | sha256sum | cut -d' ' -f1)-$(node --version)
	if [ "$(cat $D/node_modules/.mb-stamp 2>/dev/null)" != "$stamp" ]; then
		log "npm ci ($D)"
		(cd $D && NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
			die "npm ci failed in $D"
		echo "$stamp" >$D/node_modules/.mb-stamp
	fi
	node $D/check-engines.mjs 18.20.0
	;;
lint)
	"$BIN/redocly" lint api/openapi.yaml --config $D/redocly.yaml --format=summary
	;;
types)
	mkdir -p $D/gen
	"$BIN/openapi-typescript" api/openapi.yaml -o $D/gen/api.d.ts --silent
	"$BIN/tsc" -p $D/tsconfig.json
	echo "tsc --noEmit: $D/consumer.ts type-checks against the types of api/openapi.yaml"
	;;
breaking)
	node $D/check-breaking.mjs api/released/v1.yaml api/openapi.yaml CHANGELOG.md
	;;
browser)
	[ $# -eq 3 ] || die "usage: $0 browser URL DIR"
	CHROMIUM=${CHROMIUM:-$(command -v chromium)} node $D/check-docs.mjs "$2" api/openapi.yaml "$3/docs.png"
	;;
*) die "usage: $0 install|lint|types|breaking|browser URL DIR" ;;
esac
