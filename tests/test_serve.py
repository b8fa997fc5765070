"""``llmclf serve``: a real server in a subprocess on a loopback port, driven over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers import tiny_config, topic_frame

import llmclf
from llmclf import Classifier, Prediction
from llmclf.cli import main
from llmclf.serve import ServeConfig, create_app
from llmclf.serve.app import model_sha256

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only
MAX_BATCH = 8
MAX_CHARS = 200
STARTUP_S = 90.0


# ----- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained 3-class gpt2-tiny run (a few seconds), shared by this module."""
    from conftest import SHARED_DATA

    root = tmp_path_factory.mktemp("serve")
    data = root / "tickets.csv"
    topic_frame().to_csv(data, index=False)
    config = tiny_config(data, root / "run", epochs=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCLF_HOME", str(SHARED_DATA))
        mp.setenv("LLMCLF_OFFLINE", "1")
        return llmclf.Trainer(config).fit().output_dir


@pytest.fixture(scope="module")
def classifier(run_dir: Path) -> Classifier:
    return Classifier.load(run_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def running_server(run: Path, log: Path, *options: str) -> Iterator[str]:
    """``python -m llmclf serve RUN`` on a free loopback port; yields its base URL."""
    from conftest import SHARED_DATA

    env = {**os.environ, "LLMCLF_HOME": str(SHARED_DATA), "LLMCLF_OFFLINE": "1"}
    env.pop("LLMCLF_SERVE_CONFIG", None)
    port = _free_port()
    command = [sys.executable, "-m", "llmclf", "serve", str(run), "--host", HOST]
    command += ["--port", str(port), *options]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, f"server exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server not up in {STARTUP_S}s:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    limits = ("--max-batch", str(MAX_BATCH), "--max-chars", str(MAX_CHARS))
    with running_server(run_dir, log, *limits) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


TEXTS = [
    "my printer is not working again",
    "reset my password please",
    "why was I charged twice for the invoice",
    "",  # an empty text still gets a prediction
    "  keyboard   battery  ",
    "Grüße — 请帮我 🙂 login locked",
    "refund",
    "x" * MAX_CHARS,  # exactly at the limit
]


def expected(classifier: Classifier, texts: list[str]) -> list[dict]:
    return [p.to_dict() for p in classifier.predict(texts)]


# ----- endpoints -----------------------------------------------------------------------------
def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_info_describes_the_served_model(
    client: httpx.Client, run_dir: Path, classifier: Classifier
) -> None:
    info = client.get("/info").json()
    sha = hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    assert info["labels"] == list(classifier.labels) == ["account", "billing", "hardware"]
    assert info["backbone"] == "gpt2-tiny"
    assert info["pooling"] == classifier.model.pooling
    assert info["trainable"] == "all"
    assert info["llmclf_version"] == info["trained_with"] == llmclf.__version__
    assert info["model_sha256"] == sha
    assert info["limits"]["max_batch"] == MAX_BATCH
    assert info["limits"]["max_chars"] == MAX_CHARS
    assert info["complete"] is True and info["warnings"] == []


def test_predict_round_trip_equals_classifier_predict(
    client: httpx.Client, classifier: Classifier
) -> None:
    response = client.post("/predict", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert predictions == expected(classifier, TEXTS)  # labels and probabilities, exactly
    for p in predictions:
        assert set(p["probabilities"]) == set(classifier.labels)
        assert p["score"] == max(p["probabilities"].values())


def test_predictions_keep_input_order(client: httpx.Client, classifier: Classifier) -> None:
    texts = list(reversed(TEXTS))
    predictions = client.post("/predict", json={"texts": texts}).json()["predictions"]
    assert predictions == expected(classifier, texts)


def test_empty_list_gives_empty_result(client: httpx.Client) -> None:
    response = client.post("/predict", json={"texts": []})
    assert response.status_code == 200
    assert response.json() == {"predictions": []}


def test_openapi_docs(client: httpx.Client) -> None:
    assert "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/info", "/health"} <= set(schema["paths"])
    assert "/" not in schema["paths"]


def _texts_schema(schema: dict) -> dict:
    """The schema of PredictRequest.texts, as /openapi.json publishes it."""
    ref = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    name = ref["schema"]["$ref"].rsplit("/", 1)[-1]
    return schema["components"]["schemas"][name]["properties"]["texts"]


def test_openapi_states_the_limits_and_every_status(client: httpx.Client) -> None:
    """A fuzzer found requests valid by the schema that got 413: the schema had no limits."""
    schema = client.get("/openapi.json").json()
    texts = _texts_schema(schema)
    assert texts["maxItems"] == MAX_BATCH
    assert texts["items"] == {"type": "string", "maxLength": MAX_CHARS}
    predict = schema["paths"]["/predict"]["post"]["responses"]
    assert set(predict) == {"200", "413", "422"}
    for status, body in (("413", "ErrorResponse"), ("422", "ValidationErrorResponse")):
        content = predict[status]["content"]["application/json"]["schema"]
        assert content["$ref"].endswith(f"/{body}")
    for path in ("/info", "/health"):  # the body-size limit answers every path
        assert set(schema["paths"][path]["get"]["responses"]) == {"200", "413"}


def test_schema_follows_the_options_and_a_schema_valid_request_is_accepted(
    classifier: Classifier,
) -> None:
    from fastapi.testclient import TestClient

    small = create_app(classifier, max_batch=3, max_chars=40)
    large = create_app(classifier, max_batch=5, max_chars=90)  # apps do not share a schema
    for app, (batch, chars) in ((small, (3, 40)), (large, (5, 90))):
        with TestClient(app) as test_client:
            texts = _texts_schema(test_client.get("/openapi.json").json())
            assert (texts["maxItems"], texts["items"]["maxLength"]) == (batch, chars)
            # the largest request the schema allows, in characters JSON escapes the most
            largest = ["🙂" * texts["items"]["maxLength"]] * texts["maxItems"]
            response = test_client.post("/predict", json={"texts": largest})
            assert response.status_code == 200, response.text
            over = test_client.post("/predict", json={"texts": [*largest, "a"]})
            assert over.status_code == 413


def test_info_says_when_the_served_run_is_unfinished(run_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "llmclf.json").read_text())
    (copy / "llmclf.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.warns(llmclf.errors.UnfinishedRunWarning):
        app = create_app(copy, device="cpu")
    with TestClient(app) as test_client:
        info = test_client.get("/info").json()
    assert info["complete"] is False
    assert len(info["warnings"]) == 1 and "is an unfinished run" in info["warnings"][0]


def test_several_workers_warn_once_about_an_unfinished_run(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` warns in the main process; each worker's /info still says so, silently."""
    import warnings

    from fastapi.testclient import TestClient

    from llmclf.serve import CONFIG_ENV, _warn_if_unfinished
    from llmclf.serve.app import app_from_environment

    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "llmclf.json").read_text())
    (copy / "llmclf.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.warns(llmclf.errors.UnfinishedRunWarning, match="unfinished run"):
        _warn_if_unfinished(copy)
    monkeypatch.setenv(CONFIG_ENV, ServeConfig(run=str(copy), workers=2, device="cpu").to_json())
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # else the factory re-divides torch's threads
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app = app_from_environment()
    with TestClient(app) as test_client:
        assert test_client.get("/info").json()["complete"] is False


# ----- limits and malformed requests -----------------------------------------------------------
JSON = {"Content-Type": "application/json"}
OVER_BATCH = json.dumps({"texts": ["a"] * (MAX_BATCH + 1)})
OVER_CHARS = json.dumps({"texts": ["ok", "y" * (MAX_CHARS + 1)]})


@pytest.mark.parametrize(
    ("body", "headers", "status", "detail"),
    [
        ('{"texts": ["a", ', JSON, 422, "request body is not valid JSON at character"),
        ("not json at all", JSON, 422, "request body is not valid JSON"),
        ('{"texts": ["a", 3]}', JSON, 422, "texts[1]: Input should be a valid string"),
        ('{"texts": "one text"}', JSON, 422, "texts: Input should be a valid list"),
        ('{"texts": null}', JSON, 422, "texts: Input should be a valid list"),
        ('{"text": ["a"]}', JSON, 422, 'texts: field required; send {"texts": ["..."]}'),
        ('{"texts": ["a"], "extra": 1}', JSON, 422, "extra: Extra inputs are not permitted"),
        ('["a", "b"]', JSON, 422, "request body must be a JSON object"),
        ('{"texts": ["a"]}', {"Content-Type": "text/plain"}, 422, "Content-Type: application/json"),
        (OVER_BATCH, JSON, 413, f"{MAX_BATCH + 1} texts in one request; the limit is {MAX_BATCH}"),
        (OVER_CHARS, JSON, 413, f"texts[1] has {MAX_CHARS + 1} characters; the limit is"),
        ('{"texts": []}' + " " * 40_000, JSON, 413, "request body is over"),
    ],
    ids=[
        "truncated-json",
        "not-json",
        "number-in-texts",
        "string-not-list",
        "null",
        "missing-texts",
        "extra-field",
        "array-body",
        "wrong-content-type",
        "over-max-batch",
        "over-max-chars",
        "body-too-large",
    ],
)
def test_limits_and_malformed_requests(
    client: httpx.Client, body: str, headers: dict, status: int, detail: str
) -> None:
    response = client.post("/predict", content=body.encode(), headers=headers)
    assert response.status_code == status, response.text
    message = response.json()["detail"]
    assert isinstance(message, str) and "\n" not in message
    assert detail in message
    if status == 413:
        assert "--max-" in message  # names the limit


def test_chunked_body_over_the_limit_is_cut_off(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield b'{"texts": ['
        for _ in range(100):
            yield b'"' + b"z" * 1000 + b'", '
        yield b'"z"]}'

    response = client.post("/predict", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert "request body is over" in response.json()["detail"]
    assert client.get("/health").status_code == 200  # and the server is fine


# ----- concurrency ---------------------------------------------------------------------------
def test_load_concurrent_clients_get_their_own_answers(server: str, classifier: Classifier) -> None:
    """400 requests from 8 concurrent clients: zero errors, every answer its own request's."""
    clients, per_client, budget_s = 8, 50, 180.0
    rng = random.Random(7)
    pool = topic_frame(rows_per_class=20, seed=3)["text"].tolist()
    payloads = [rng.sample(pool, rng.randint(1, MAX_BATCH)) for _ in range(24)]
    answers = [expected(classifier, texts) for texts in payloads]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s

    def worker(seed: int) -> None:
        local = random.Random(seed)
        with httpx.Client(base_url=server, timeout=30) as c:
            for _ in range(per_client):
                if time.monotonic() > deadline:
                    with lock:
                        failures.append("time budget exhausted")
                    return
                k = local.randrange(len(payloads))
                start = time.perf_counter()
                try:
                    response = c.post("/predict", json={"texts": payloads[k]})
                    ok = response.status_code == 200
                    got = response.json()["predictions"] if ok else response.text
                except httpx.HTTPError as exc:
                    ok, got = False, repr(exc)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if not ok or got != answers[k]:
                        failures.append(f"payload {k}: {str(got)[:200]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=budget_s + 60)
    assert not any(t.is_alive() for t in threads), "load test clients did not finish"
    assert failures == []
    assert len(latencies) == clients * per_client
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"\nserve load: {len(latencies)} requests, {clients} clients: "
        f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )


# ----- the page at / -------------------------------------------------------------------------
def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "headless Chromium is needed for the page test (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _dump_dom(chromium: str, url: str, profile: Path) -> str:
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no #{element_id} in the page:\n{dom[:3000]}"
    return match.group(1)


def test_page_shows_a_prediction_in_headless_chromium(
    server: str, classifier: Classifier, tmp_path: Path
) -> None:
    chromium = _chromium()
    text = "my invoice shows a refund I never got"
    want = classifier.predict([text])[0]
    dom = _dump_dom(chromium, f"{server}/?text={urllib.parse.quote(text)}", tmp_path / "p1")
    assert "<textarea" in dom and 'id="classify"' in dom
    assert _element_text(dom, "label") == want.label
    assert _element_text(dom, "score") == f"{100 * want.score:.1f}%"
    for label in classifier.labels:
        assert f"<td>{label}</td>" in dom
    assert "labels: account, billing, hardware" in dom  # /info was read too

    too_long = "w" * (MAX_CHARS + 1)
    dom = _dump_dom(chromium, f"{server}/?text={too_long}", tmp_path / "p2")
    assert "Error 413" in _element_text(dom, "error")


# ----- several worker processes --------------------------------------------------------------
@pytest.mark.slow
def test_several_workers_serve_the_same_model(
    run_dir: Path, classifier: Classifier, tmp_path: Path
) -> None:
    with running_server(run_dir, tmp_path / "server.log", "--workers", "2") as url:
        info = httpx.get(f"{url}/info", timeout=30).json()
        assert info["model_sha256"] == model_sha256(run_dir)
        assert info["limits"]["max_batch"] == 64
        response = httpx.post(f"{url}/predict", json={"texts": TEXTS[:3]}, timeout=30)
        got, want = response.json()["predictions"], expected(classifier, TEXTS[:3])
        # each worker gets its share of the CPU threads, so sums may round differently
        assert [p["label"] for p in got] == [p["label"] for p in want]
        for g, w in zip(got, want, strict=True):
            for label, probability in w["probabilities"].items():
                assert g["probabilities"][label] == pytest.approx(probability, abs=1e-6)


# ----- the Python API and the CLI, in process ------------------------------------------------
def test_create_app_takes_a_loaded_classifier(classifier: Classifier) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(classifier, max_batch=2)) as test_client:
        info = test_client.get("/info").json()
        assert info["model_sha256"] is None  # no run directory given: nothing to hash
        assert info["limits"]["max_batch"] == 2
        response = test_client.post("/predict", json={"texts": ["a", "b"]})
        assert response.json()["predictions"] == expected(classifier, ["a", "b"])
        assert test_client.get("/").headers["content-type"].startswith("text/html")


def test_inference_runs_off_the_event_loop_one_batch_at_a_time(classifier: Classifier) -> None:
    """While a batch computes, /health answers and a second batch waits for the first."""
    from fastapi.testclient import TestClient

    release, entered = threading.Event(), threading.Semaphore(0)
    active, most = [0], [0]
    guard = threading.Lock()

    class Gated(Classifier):
        def predict(self, texts: Iterable[str], batch_size: int = 32) -> list[Prediction]:
            with guard:
                active[0] += 1
                most[0] = max(most[0], active[0])
            entered.release()
            release.wait(timeout=30)
            try:
                return super().predict(texts, batch_size)
            finally:
                with guard:
                    active[0] -= 1

    gated = Gated(
        classifier.model,
        classifier.tokenizer,
        classifier.policy,
        classifier.labels,
        manifest=classifier.manifest,
        device=classifier.device,
    )
    results: dict[str, list] = {}
    with TestClient(create_app(gated)) as test_client:

        def call(text: str) -> None:
            response = test_client.post("/predict", json={"texts": [text]})
            results[text] = response.json()["predictions"]

        threads = [threading.Thread(target=call, args=(t,)) for t in ("refund", "printer")]
        for t in threads:
            t.start()
        assert entered.acquire(timeout=30), "no request reached the model"
        assert test_client.get("/health").json() == {"status": "ok"}  # the loop is free
        assert not entered.acquire(timeout=0.5)  # the second request waits for the lock
        release.set()
        for t in threads:
            t.join(timeout=30)
    assert most[0] == 1
    for text in ("refund", "printer"):
        assert results[text] == expected(classifier, [text])


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"max_batch": 0}, "max_batch"), ({"port": 70000}, "port"), ({"device": "tpu"}, "device")],
)
def test_serve_config_names_the_bad_field(changes: dict, field: str) -> None:
    with pytest.raises(llmclf.LlmclfError, match=rf"^{field}: "):
        ServeConfig(run="runs/x", **changes)


def test_cli_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--max-batch", "--max-chars", "--device"):
        assert option in result.output


def test_cli_missing_run_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "does not exist" in result.output


def test_cli_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    result = CliRunner().invoke(main, ["serve", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: llmclf serve needs fastapi, not installed here; run: pip install 'llmclf[serve]'"
    )


def test_cli_port_in_use_is_one_line_before_loading(run_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(run_dir), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port} (")
    assert result.stderr.endswith("pick another --port or stop what is using it\n")
