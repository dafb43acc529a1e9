"""--server-url: gate a deployment someone else runs. No server is started by the session; the
served model name comes from the endpoint's /v1/models; the baseline records the endpoint.

The "deployment" is a real `transformers serve` of the tiny BF16 model, laid out in a hub cache
so that its /v1/models lists it by a hub-style name, as vLLM's does.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quantgate.serving.engines import resolve_checkpoint
from quantgate.serving.servers import (
    Server,
    free_port,
    transformers_serve_command,
    transformers_serve_env,
)
from quantgate.suites import load_suite

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "accuracy" / "suites" / "tiny.yaml"
pytestmark = pytest.mark.slow
REVISION = "0" * 40


def _hub_cache_with(model_dir: Path, name: str, hub: Path) -> None:
    repo = hub / f"models--{name.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    work = tmp_path_factory.mktemp("deployment")
    model = resolve_checkpoint(load_suite(TINY), "bf16", work / "cache")
    _hub_cache_with(Path(model), "quantgate/tiny-bf16", work / "hub")
    port = free_port()
    server = Server(
        transformers_serve_command("quantgate/tiny-bf16", host="127.0.0.1", port=port),
        port=port,
        served_model="quantgate/tiny-bf16",
        log_path=work / "server.log",
        env=transformers_serve_env(work / "hub"),
        startup_timeout=300,
    )
    with server:
        yield server, work


def test_gates_a_running_endpoint_without_starting_a_server(deployment, tmp_path):
    server, _ = deployment
    served_before = server.log_path.read_text().count("POST /v1/chat/completions")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "accuracy and not benchmark",
            "--suite",
            "tiny",
            "--precision",
            "bf16",
            "-k",
            "arith or words",
            f"--server-url={server.base_url}",
            "--snapshot-update",
            f"--quantgate-dir={tmp_path / 'qg'}",
            f"--baselines-dir={tmp_path / 'baselines'}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
    assert not list((tmp_path / "qg" / "runs" / "tiny" / "bf16").glob("server*.log"))
    # the deployment answered every item of both tasks (150 + 100)
    assert server.log_path.read_text().count("POST /v1/chat/completions") - served_before == 250
    stored = json.loads((tmp_path / "baselines" / "tiny" / "arith" / "bf16.json").read_text())
    assert stored["provenance"]["engine"] == "external"
    assert stored["provenance"]["endpoint"] == server.base_url
    # the tiny BF16 model's own accuracy (right on some items, wrong on others), over all 150
    assert stored["summary"]["n"] == 150
    assert 0.4 <= stored["summary"]["mean"] <= 0.9


def test_an_unreachable_endpoint_fails_with_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "accuracy and not benchmark",
            "--suite",
            "tiny",
            "--precision",
            "fp8",
            f"--server-url={url}",
            "-k",
            "arith",
            f"--quantgate-dir={tmp_path / 'qg'}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert f"--server-url {url}: cannot reach {url}/models" in result.stdout
