#!/usr/bin/env python3
"""The seat cycle of bench/pgbench/seats_tx.sql as a script for a single-user backend
(`postgres --single`), for counting PostgreSQL's instructions per write under valgrind
(scripts/bench.sh, run `instructions`): each statement PREPAREd once with generic plans, as
the service's prepared statements run, then PAIRS assign-and-remove pairs EXECUTEd with fixed
ids (the same ones every time: a run is repeatable to the instruction, nearly).

    seat_statements.py PAIRS OUT.sql [SQL ...]   SQL: statements to run first (e.g. ALTER TABLE)
"""
import random
import re
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "pgbench" / "seats_tx.sql"
IDS = {":n": ("b0000000", "$1"), ":b": ("b2000000", "$2"), ":u": ("b1000000", "$3")}


def bench_id(prefix: str, n: int) -> str:
    """bench/data.sql's bench_id()."""
    return f"'{prefix}-0000-4000-8000-{n:012x}'"


def main() -> None:
    pairs, out, first = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    body = [line for line in SCRIPT.read_text().splitlines()
            if line and not line.startswith(("--", "\\"))]
    lines = ["SET plan_cache_mode = force_generic_plan;", *first,
             "DELETE FROM seat_assignments WHERE user_id::text LIKE 'b1000000-%';"]
    names = []
    for i, stmt in enumerate(body):
        if stmt in ("BEGIN;", "COMMIT;"):
            names.append(None)
            continue
        for var, (prefix, param) in IDS.items():
            stmt = stmt.replace(f"bench_id('{prefix}', {var})", f"{param}::uuid")
        if "bench_id" in stmt or re.search(r"(?<!:):[nbu]\b", stmt):
            sys.exit(f"seat_statements.py: an id this script does not know in: {stmt}")
        lines.append(f"PREPARE s{i}(uuid, uuid, uuid) AS {stmt.rstrip(';')};")
        names.append(f"s{i}")
    rng = random.Random(7)
    for _ in range(pairs):
        n = rng.randint(1, 2500)  # seats_tx.sql's id scheme
        ids = (bench_id("b0000000", n), bench_id("b2000000", (n - 1) * 20 + 6),
               bench_id("b1000000", (n - 1) * 8 + rng.randint(2, 8)))
        lines += [stmt if name is None else f"EXECUTE {name}({', '.join(ids)});"
                  for stmt, name in zip(body, names)]
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
