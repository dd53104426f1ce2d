#!/usr/bin/env bash
# The consumer suite (issue 18): what a consumer team generates from api/openapi.yaml with
# Portman and runs with Newman, against any environment that holds the demo data.
#
#   GA_TOKEN=… OPERATOR_TOKEN=… OTHER_PARTNER_TOKEN=… tests/consumer/consumer-suite.sh BASE_URL [OUTDIR]
#
# GA_TOKEN: a global_admin of Contoso (11111111-…); OPERATOR_TOKEN: an operator;
# OTHER_PARTNER_TOKEN: a global_admin of another partner (Fabrikam in the demo data).
# The run creates what it changes (users, a partner, a product, a package, a purchase,
# activations, a webhook): point it at a throwaway environment. Writes OUTDIR (default
# build/consumer): portman-config.json, collection.json, newman.json. Prints the numbers;
# exit 1 when an assertion failed or a request got no answer.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BASE_URL=${1:?usage: consumer-suite.sh BASE_URL [OUTDIR]}
OUT=$(mkdir -p "${2:-$HERE/build}" && cd "${2:-$HERE/build}" && pwd)
: "${GA_TOKEN:?set GA_TOKEN}" "${OPERATOR_TOKEN:?set OPERATOR_TOKEN}" "${OTHER_PARTNER_TOKEN:?set OTHER_PARTNER_TOKEN}"
SPEC=$HERE/../../api/openapi.yaml
bash "$HERE/npm-ci.sh"
T0=$SECONDS
node "$HERE/make-portman-config.js" "$SPEC" >"$OUT/portman-config.json"
# Portman 1.33 converts and injects the tests; no Newman run, no upload, no network. It works
# in ./tmp of the current directory: OUT.
cd "$OUT"
"$HERE/node_modules/.bin/portman" --local "$SPEC" --portmanConfigFile "$OUT/portman-config.json" \
	--output "$OUT/collection.json" --baseUrl "$BASE_URL" --includeTests true --runNewman false \
	--syncPostman false --logAssignVariables false --warn false >"$OUT/portman.log" 2>&1 || {
	tail -n 30 "$OUT/portman.log" >&2
	echo "consumer-suite: Portman failed (log: $OUT/portman.log)" >&2
	exit 1
}
T1=$SECONDS
rc=0
"$HERE/node_modules/.bin/newman" run "$OUT/collection.json" --env-var "baseUrl=$BASE_URL" \
	--env-var "gaToken=$GA_TOKEN" --env-var "operatorToken=$OPERATOR_TOKEN" \
	--env-var "otherPartnerToken=$OTHER_PARTNER_TOKEN" --timeout-request 30000 --ignore-redirects \
	--reporters cli,json --reporter-json-export "$OUT/newman.json" --color off --disable-unicode \
	>"$OUT/newman.log" 2>&1 || rc=$?
node -e '
const r = require(process.argv[1]).run, s = r.stats;
const f = r.failures.length;
console.log(`consumer suite (Portman + Newman): ${s.requests.total} requests, ${s.assertions.total} assertions, ${s.assertions.failed} failed assertions, ${f} failures`);
for (const x of r.failures.slice(0, 40)) console.log(`  FAIL ${x.source && x.source.name}: ${x.error && (x.error.test || x.error.name)}: ${x.error && x.error.message}`);
process.exit(f || s.requests.failed || s.assertions.failed ? 1 : 0);
' "$OUT/newman.json" || rc=1
echo "consumer suite: generated in $((T1 - T0))s, run in $((SECONDS - T1))s"
[ "$rc" = 0 ] || echo "consumer-suite: failures (Newman log: $OUT/newman.log)" >&2
exit "$rc"
