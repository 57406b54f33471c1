"""Generated requests against the live API: never a 5xx, always the documented answer.

Schemathesis builds requests from the API's own OpenAPI document, valid and invalid, and
checks every response: no server error, a status the document lists, a body its schema
allows. Bad input must be a 4xx with an error body, whatever shape it comes in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("worker")

HOOKS = Path(__file__).parents[1] / "support" / "schemathesis_hooks.py"


def test_generated_requests_get_documented_answers(api_url: str, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is a dev dependency"
    result = subprocess.run(
        [cli, "run", f"{api_url}/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance",
         "--max-examples", "30", "--seed", "1", "--request-timeout", "40",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "failures" not in result.stdout.split("SUMMARY")[-1]
