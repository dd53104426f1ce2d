"""Issue 15: who may call each operation is machine-readable in the contract (`x-roles`,
`x-roles-by-variant`), written from THE role matrix (tests/api/role_matrix.py) by
scripts/contract_roles.py; this fails when the two disagree (run the script to rewrite them)."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_the_contract_names_the_role_matrix_roles_of_every_operation():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "contract_roles.py"),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, ("x-roles of api/openapi.yaml differ from tests/api/role_matrix.py "
                               "(run scripts/contract_roles.py):\n" + r.stdout + r.stderr)
