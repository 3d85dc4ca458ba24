"""What a user sees, in a real browser: Debian's Chromium (``/usr/bin/chromium``) driven
through its ChromeDriver by Selenium (nothing downloads a browser; ``.ci/run`` installs
both packages with apt when missing).

One short batch run through the command line; while it goes, the Dask dashboard's
``/status`` page must render its Bokeh plots (drawn over a websocket: the test waits for
the plot canvases, not for a time budget); afterwards the MLflow UI, started on 127.0.0.1
against the run's store as ``make ui`` starts it, must open the experiment (by its plain
address) in the model-training view, keep a user's own choice of view, and show the
run's name and key figures, and serve its PNG artifact.  Screenshots go to ``tmp_path``.
Asserts only stable, user-visible text of the mlflow minor series pinned in pyproject.toml.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _pipeline_helpers import QUIET_ENV, base_overrides, mlflow_runs

from pipeline.config import PROJECT_ROOT

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Count the <canvas> elements, inside shadow roots too (Bokeh 3 renders into them).
_CANVASES = """
const count = (root) => {
  let n = [...root.querySelectorAll('canvas')].filter(c => c.width > 0 && c.height > 0).length;
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) n += count(el.shadowRoot);
  return n;
};
return count(document);
"""

# The title Dask's Progress panel draws ("Progress -- total: N, waiting: ..."), from Bokeh's models.
_PROGRESS = """
for (const doc of Bokeh.documents)
  for (const m of doc._all_models.values())
    if (m.type === "Title" && m.text.startsWith("Progress -- total:") && !m.text.startsWith("Progress -- total: 0,"))
      return m.text;
return null;
"""


def _browser(tmp_path: Path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("apt-get install chromium chromium-driver to run the browser test")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, driver=None, shot: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if value := check():
                return value
        except Exception:  # the page or the server is not there yet
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            if driver is not None and shot is not None:
                driver.save_screenshot(str(shot))
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}"
                        + (f"; page text: {driver.find_element('tag name', 'body').text[:1500]!r}" if driver else ""))
        time.sleep(0.25)


def test_dashboard_and_mlflow_ui_render_the_run(store, mlflow_uri, tmp_path):
    env = {**os.environ, **QUIET_ENV}
    db = tmp_path / "mlflow.db"
    port = _free_port()
    # The MLflow UI (as `make ui` starts it), on 127.0.0.1, started first: it takes seconds.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "neuroliquid", "--host", "127.0.0.1",
         "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{db}", "--default-artifact-root",
         str(tmp_path / "artifacts")], stdout=(tmp_path / "mlflow-ui.log").open("w"), stderr=subprocess.STDOUT,
        env=env, start_new_session=True)
    log = tmp_path / "run.log"
    args = base_overrides(store, tmp_path) + ["tracking.run_name=ui", "model.kind=ltc", "model.hidden=128",
                                              "data.steps_per_block=20"]
    run = subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                           env=env, cwd=PROJECT_ROOT, start_new_session=True)
    driver = None
    try:
        driver = _browser(tmp_path)
        # The Dask dashboard while the run goes: rendered, not blank.
        link = _wait("the dashboard link", lambda: re.search(r"dashboard: (http://127\.0\.0\.1:\d+/status)",
                                                             log.read_text()), 60)[1]
        driver.get(link)
        _wait("the dashboard's plots", lambda: driver.execute_script(_CANVASES) >= 3, 30, driver,
              tmp_path / "dashboard-timeout.png")
        # The Progress panel counts the run's regions (all submitted up front), not those in flight.
        total = int(_wait("the regions to run", lambda: re.search(r"(\d+) of \d+ regions to run", log.read_text()),
                          30)[1])
        title = _wait("the Progress panel's title", lambda: driver.execute_script(_PROGRESS), 30, driver,
                      tmp_path / "progress-timeout.png")
        assert f"total: {total}," in title, (title, total)
        assert run.poll() is None, "the run ended before the dashboard was checked"
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        driver.get("about:blank")  # the dashboard tab goes away while the run goes on
        assert run.wait(timeout=120) == 0, log.read_text()
        text = log.read_text()  # a quiet terminal: no Bokeh wildcard warning, no Dask noise
        assert not [w for w in ("Host wildcard", "Traceback", "ERROR", "WARNING") if w in text], text

        (r,) = mlflow_runs(mlflow_uri)
        assert r.info.status == "FINISHED"
        base = f"http://127.0.0.1:{port}"
        _wait("the MLflow UI", lambda: urllib.request.urlopen(f"{base}/health", timeout=2).status == 200, 90)
        # The experiment by its plain address, as a user clicks it in the list: the model-training
        # view (Runs, Models), the run listed.  MLflow 3.17's UI does not read the tag; `make ui`'s
        # app (pipeline/core/mlflow_ui.py) makes model training the browser's default view.
        exp = r.info.experiment_id
        from mlflow.tracking import MlflowClient

        assert MlflowClient(mlflow_uri).get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
        assert f"/#/experiments/{exp}/runs/{r.info.run_id}?workflowType=machine_learning" in log.read_text()
        body = lambda: driver.find_element("tag name", "body").text  # noqa: E731

        def experiment_page(shot: str) -> list[str]:
            driver.get(f"{base}/#/experiments/{exp}")
            _wait("the experiment page", lambda: ("ui" in body().split() or "Sessions" in body().splitlines())
                  and "Loading..." not in body(), 60, driver, tmp_path / f"{shot}-timeout.png")
            driver.save_screenshot(str(tmp_path / f"{shot}.png"))
            return body().splitlines()

        nav = experiment_page("experiment")
        assert "Runs" in nav and "Models" in nav and "ui" in " ".join(nav).split(), nav[:30]
        assert "Sessions" not in nav and "Prompts" not in nav, nav[:30]  # not the GenAI view
        # A user's own choice of view is kept (here: the GenAI view, as set by MLflow's switch).
        driver.execute_script('localStorage.setItem("mlflow.workflowType_v1", JSON.stringify("genai"))')
        driver.get("about:blank")
        assert "Sessions" in experiment_page("experiment-genai")
        driver.execute_script('localStorage.setItem("mlflow.workflowType_v1", JSON.stringify("machine_learning"))')
        # The run page: its name and key figures.
        driver.get(f"{base}/#/experiments/{exp}/runs/{r.info.run_id}?workflowType=machine_learning")
        keys = ("throughput_seq_per_s", "batch_latency_p50_ms", "batch_latency_p99_ms", "energy.modelled_j_per_sequence",
                "recording_seconds")
        _wait("the run's metrics", lambda: all(k in body() for k in keys), 60, driver, tmp_path / "run-timeout.png")
        driver.save_screenshot(str(tmp_path / "run.png"))
        assert "ui" in body().splitlines()
        # Its PNG artifact, served and shown by the UI's artifact preview (decoded: natural size).
        driver.get(f"{base}/#/experiments/{exp}/runs/{r.info.run_id}/artifacts/progress.png"
                   "?workflowType=machine_learning")
        size = _wait("the PNG artifact", lambda: driver.execute_script(
            "const i = [...document.images].find(i => i.complete && i.naturalWidth >= 300); "
            "return i ? [i.naturalWidth, i.naturalHeight] : null"), 30, driver, tmp_path / "artifact-timeout.png")
        assert size == [700, 320], size  # progress.png: 7 x 3.2 in at 100 dpi
        driver.save_screenshot(str(tmp_path / "artifact.png"))
    finally:
        if driver is not None:
            driver.quit()
        for proc in (run, server):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp_path / "chrome-profile", ignore_errors=True)
