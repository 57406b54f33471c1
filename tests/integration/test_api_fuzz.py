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
from processes import auth_on, create_key

from services.common.principal import SCOPES

pytestmark = pytest.mark.usefixtures("worker")

HOOKS = Path(__file__).parents[1] / "support" / "schemathesis_hooks.py"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def stack_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The integration tests' stack as a cluster runs it: authentication on (with limits
    that never refuse these runs)."""
    return auth_on(stack_env, INFERQ_RATE_LIMIT_REQUESTS_PER_SECOND="0",
                   INFERQ_RATE_LIMIT_ROWS_PER_MINUTE="0")


@pytest.mark.parametrize("with_key", [True, False], ids=["with a key", "without a key"])
def test_generated_requests_get_documented_answers(
    api_url: str, stack_env: dict[str, str], tmp_path: Path, with_key: bool,
) -> None:
    """With a key of every scope, and ``ignored_auth``: each operation is also sent without
    the key and with a wrong one, and must refuse both. Without a key, every /v1 answer is
    the documented 401."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is a dev dependency"
    options = ["--checks", CHECKS, "--max-examples", "5"]
    if with_key:
        key = create_key(stack_env, "default", ",".join(SCOPES))["key"]
        options = ["--checks", f"{CHECKS},ignored_auth", "--max-examples", "30",
                   "--header", f"Authorization: Bearer {key}"]
    result = subprocess.run(
        [cli, "run", f"{api_url}/openapi.json", *options, "--seed", "1",
         "--request-timeout", "40", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "failures" not in result.stdout.split("SUMMARY")[-1]
