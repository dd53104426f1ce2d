#!/usr/bin/env bash
# Lint the OpenAPI contract with spectral (ruleset .spectral.yaml = spectral:oas).
# Fails on any error or warning. Override the binary with SPECTRAL=/path/to/spectral.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
"${SPECTRAL:-spectral}" lint --fail-severity=warn --ruleset .spectral.yaml api/openapi.yaml
