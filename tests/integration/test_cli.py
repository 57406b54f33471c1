"""The ``inferq`` command line, run from the installed package."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pytest
from processes import INFERQ, service_env
from sklearn.tree import DecisionTreeClassifier

from ml.store import save_model

pytestmark = pytest.mark.usefixtures("worker")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERQ, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "args",
    [[], ["up"], ["api"], ["worker"], ["models"], ["models", "import"], ["models", "alias"],
     ["models", "versions"], ["predict"], ["train"], ["training-jobs"],
     ["training-jobs", "get"], ["keys"], ["keys", "create"], ["keys", "revoke"]],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: inferq" in result.stdout


def test_predict_client(api_url: str, tmp_path: Path) -> None:
    result = run("predict", "iris", "--json", "[[5.1, 3.5, 1.4, 0.2]]", "--url", api_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # No log line per HTTP request.
    assert json.loads(result.stdout)["result"]["predictions"] == ["setosa"]
    csv = tmp_path / "rows.csv"
    csv.write_text("sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n"
                   "6.7,3.0,5.2,2.3\n5.1,3.5,1.4,0.2\n")
    result = run("predict", "iris", "--csv", str(csv), "--url", api_url)
    assert json.loads(result.stdout)["result"]["predictions"] == ["virginica", "setosa"]
    bad = run("predict", "iris", "--json", "[[1, 2]]", "--url", api_url)
    assert bad.returncode == 1 and "invalid_rows" in bad.stderr
    # --expect, as the chart's `helm test` uses it: the right answer passes, a wrong one fails.
    row = "[[5.1, 3.5, 1.4, 0.2]]"
    assert run("predict", "iris", "--json", row, "--expect", "setosa", "--url", api_url) \
        .returncode == 0
    wrong = run("predict", "iris", "--json", row, "--expect", "virginica", "--url", api_url)
    assert wrong.returncode == 1 and "expected predictions ['virginica']" in wrong.stderr


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["--json", "[[5.1, 3.5"], "inferq: --json is not valid JSON"),
        (["--json", '{"a": 1}'], "inferq: --json must be a list of rows"),
        (["--csv", "missing.csv"], "inferq: --csv: cannot read missing.csv: No such file"),
        (["--csv", "empty-cell.csv"],
         "inferq: empty-cell.csv, line 3: column 'petal_width_cm' is empty"),
        (["--json", "[[5.1, 3.5, 1.4, 0.2]]", "--url", "http://127.0.0.1:{port}"],
         "inferq: cannot reach the API at http://127.0.0.1:{port}; start it with `make up`"),
    ],
    ids=["bad-json", "not-a-list", "missing-csv", "empty-cell", "unreachable-api"],
)
def test_predict_says_in_one_line_what_is_wrong(rows: list[str], message: str,
                                                 tmp_path: Path) -> None:
    from services.cli.redis_server import free_port

    port = str(free_port())
    (tmp_path / "empty-cell.csv").write_text(
        "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n"
        "6.7,3.0,5.2,2.3\n5.1,3.5,1.4,\n")
    result = subprocess.run([INFERQ, "predict", "iris", *[r.replace("{port}", port)
                                                          for r in rows]],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(message.replace("{port}", port)), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_models_commands(tmp_path: Path, model_store: Path) -> None:
    env = service_env("redis://127.0.0.1:1/0", tmp_path / "store")
    estimator = DecisionTreeClassifier().fit(np.eye(3), ["a", "b", "c"])
    joblib.dump(estimator, tmp_path / "tree.joblib")
    imported = run("models", "import", str(tmp_path / "tree.joblib"), "--name", "tree",
                   "--features", "p,q,r", env=env)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["classes"] == ["a", "b", "c"]
    assert json.loads(run("models", "list", env=env).stdout) == {"tree": [1]}
    shown = json.loads(run("models", "show", "tree", env=env).stdout)
    assert [f["name"] for f in shown["features"]] == ["p", "q", "r"]
    assert run("models", "show", "nope", env=env).returncode == 1
    failed = run("models", "import", str(tmp_path / "missing.joblib"), "--name", "x", env=env)
    assert failed.returncode == 1 and "no file" in failed.stderr


def test_models_versions_and_alias(tmp_path: Path) -> None:
    env = service_env("redis://127.0.0.1:1/0", tmp_path / "store")
    estimator = DecisionTreeClassifier().fit(np.eye(3), ["a", "b", "c"])
    joblib.dump(estimator, tmp_path / "tree.joblib")
    for _ in range(2):
        imported = run("models", "import", str(tmp_path / "tree.joblib"), "--name", "tree",
                       env=env)
        assert imported.returncode == 0, imported.stderr
        # Redis is configured but unreachable: the import says so in one line, and succeeds.
        assert imported.stderr.count("\n") == 1 and "redis unreachable" in imported.stderr
    moved = run("models", "alias", "tree", "production", "1", env=env)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout) == {"model": "tree", "alias": "production", "version": 1}
    table = run("models", "versions", "tree", env=env).stdout.splitlines()
    assert table[0].split() == ["VERSION", "CREATED", "ESTIMATOR", "METRICS", "ALIASES",
                                "TRAINED", "BY"]
    assert table[1].split()[:2] == ["1", "*"] and "production" in table[1]
    assert table[2].split()[0] == "2" and table[-1].endswith("v1")
    listed = json.loads(run("models", "versions", "tree", "--json", env=env).stdout)
    assert listed["default_version"] == 1 and listed["aliases"] == {"production": 1}
    assert [v["aliases"] for v in listed["versions"]] == [["production"], []]
    assert [v["lineage"] for v in listed["versions"]] == [None, None]
    deleted = run("models", "alias", "tree", "production", "--delete", env=env)
    assert json.loads(deleted.stdout)["deleted"] is True
    assert json.loads(run("models", "versions", "tree", "--json", env=env).stdout)[
        "default_version"] == 2
    # Without INFERQ_REDIS_URL, the default Redis is tried quietly.
    quiet = {k: v for k, v in env.items() if k != "INFERQ_REDIS_URL"}
    assert run("models", "alias", "tree", "staging", "2", env=quiet).stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["versions", "nope"], "inferq: no model 'nope' in the store"),
        (["alias", "tree", "production", "9"], "inferq: model 'tree' has no version 9; it has 1"),
        (["alias", "nope", "production", "1"], "inferq: no model named 'nope' in the store"),
        (["alias", "tree", "Prod", "1"], "inferq: invalid alias name 'Prod'"),
        (["alias", "tree", "production"], "inferq: give the version"),
        (["alias", "tree", "production", "1", "--delete"], "inferq: --delete takes no version"),
        (["alias", "tree", "canary", "--delete"], "inferq: model 'tree' has no alias 'canary'"),
    ],
    ids=["versions-of-nothing", "unknown-version", "unknown-model", "bad-alias",
         "no-version", "delete-with-version", "delete-absent"],
)
def test_models_alias_says_in_one_line_what_is_wrong(args: list[str], message: str,
                                                     tmp_path: Path) -> None:
    env = {k: v for k, v in service_env("redis://127.0.0.1:1/0", tmp_path / "store").items()
           if k != "INFERQ_REDIS_URL"}
    save_model(tmp_path / "store", "tree", DecisionTreeClassifier().fit(np.eye(3), ["a", "b", "c"]),
               features=["p", "q", "r"])
    result = run("models", *args, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
