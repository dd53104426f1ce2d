#!/usr/bin/env bash
# Issue 18: every answer the API tests got through Prism (recorded by tests/api/helpers.py into
# MB_TRAFFIC_LOG) checked against api/openapi.yaml by ajv with OpenAPI 3.0 semantics exactly
# (validate-traffic.js), then the self-test: the same answers against the contract with `null`
# taken out of its nullable enums must fail (the defect consumers' validators hit).
#
#   tests/consumer/strict-check.sh TRAFFIC.jsonl
set -euo pipefail
cd "$(dirname "$0")"
traffic=$1
bash ./npm-ci.sh
node validate-traffic.js ../../api/openapi.yaml "$traffic"
node validate-traffic.js --self-test ../../api/openapi.yaml "$traffic"
