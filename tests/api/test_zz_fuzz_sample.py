"""Contract fuzzing, a bounded sample in every test run (issue 6, point 4); the long run
(>= 10 000 requests, invariants over the whole database) is scripts/fuzz.sh.

tests/fuzz/contract_fuzz.py generates valid and broken requests for every operation of
api/openapi.yaml that the service routes, straight at the service (MB_DIRECT), and checks every
answer against the contract. It mutates only two partners it creates itself (the demo partners
are only read), and this file is named to run last all the same."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))

import contract_fuzz  # noqa: E402
from helpers import DIRECT  # noqa: E402

SAMPLE = int(os.environ.get("MB_FUZZ_SAMPLE", "1500"))


def test_fuzzed_requests_get_documented_answers_and_keep_the_invariants():
    seed = int(os.environ["MB_FUZZ_SEED"]) if os.environ.get("MB_FUZZ_SEED") else None
    out = contract_fuzz.run(DIRECT, SAMPLE, seed=seed, scope="fuzz")
    text = contract_fuzz.report(out)
    print(text)
    log_dir = os.environ.get("MB_LOG_DIR")
    if log_dir:
        with open(os.path.join(log_dir, "contract-fuzz-sample.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    assert out["requests"] >= SAMPLE
    assert out["operations_fuzzed"] >= 10
    assert not out["failure_details"], text
    assert not out["audit_mismatches"], text
    assert not out["invariant_violations"], text
