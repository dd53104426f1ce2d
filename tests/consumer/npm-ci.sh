#!/usr/bin/env bash
# npm ci of tests/consumer (ajv, Portman, Newman; exact pins, Node 18), skipped when
# node_modules already matches package.json + package-lock.json + the node version.
set -euo pipefail
cd "$(dirname "$0")"
stamp=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)-$(node --version)
if [ "$(cat node_modules/.mb-stamp 2>/dev/null)" != "$stamp" ]; then
	echo "==> npm ci (tests/consumer)" >&2
	# --ignore-scripts: no package here needs an install script.
	NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} \
		npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
	echo "$stamp" >node_modules/.mb-stamp
fi
