"""Contract fuzzing, a bounded sample in every test run (issue 6, point 4); the long run
(>= 10 000 requests, invariants over the whole database) is scripts/fuzz.sh.

tests/fuzz/contract_fuzz.py generates valid and broken requests for every operation of
api/openapi.yaml that the service routes, straight at the service (MB_DIRECT), and checks every
answer against the contract. It mutates only two partners it creates itself (the demo partners
are only read), and this file is named to run last all the same."""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))

import contract_fuzz  # noqa: E402
from helpers import DIRECT  # noqa: E402

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "api", "openapi.yaml")

SAMPLE = int(os.environ.get("MB_FUZZ_SAMPLE", "1500"))
# Pinned: every CI run sends the same requests, so a red run is repeatable and a green one means
# the same thing each time. MB_FUZZ_SEED=random (or any number) explores other seeds by hand;
# the seed is in every failure message.
PINNED_SEED = 20200


def _seed() -> int:
    v = os.environ.get("MB_FUZZ_SEED", "")
    if v == "random":
        return random.randrange(2**31)
    return int(v) if v else PINNED_SEED


def test_fuzzed_requests_get_documented_answers_and_keep_the_invariants():
    seed = _seed()
    out = contract_fuzz.run(DIRECT, SAMPLE, seed=seed, scope="fuzz")
    text = contract_fuzz.report(out)
    print(text)
    log_dir = os.environ.get("MB_LOG_DIR")
    if log_dir:
        with open(os.path.join(log_dir, "contract-fuzz-sample.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    again = f"(seed {seed}: MB_FUZZ_SEED={seed} scripts/test.sh -k fuzz repeats this run)"
    ops = len(contract_fuzz.Contract(SPEC).ops)
    assert out["requests"] >= SAMPLE, again
    assert not out["operations_skipped"], f"operations not fuzzed {again}:\n{text}"
    assert out["operations_fuzzed"] == ops, f"{out['operations_fuzzed']} of {ops} {again}"
    assert not out["failure_details"], f"{again}\n{text}"
    assert not out["audit_mismatches"], f"{again}\n{text}"
    assert not out["invariant_violations"], f"{again}\n{text}"
