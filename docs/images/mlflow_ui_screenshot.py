"""Make docs/images/mlflow_ui.png: MLflow's web UI listing a real sweep, its parent run expanded.

Not run by CI or the tests (it needs a browser); run it by hand when the picture should
change, from the checkout's root:

    pip install -e ".[mlflow]" playwright   # no `playwright install`: it uses the system's Chromium
    apt-get install -y chromium             # if /usr/bin/chromium is missing (Debian/Ubuntu)
    python docs/images/mlflow_ui_screenshot.py [OUT.png] [--browser /usr/bin/chromium]

In a temporary folder it runs a real sweep,
`python -m runner -m experiment=seed_persistent point.x=1.0,2.0,3.0 log.mlflow=sqlite:///mlflow.db`,
serves that store with `mlflow server --workers 1` on a free local port, opens the
experiment's runs in headless Chromium (Playwright), switches the UI from its GenAI view to
"Model training", closes the assistant's panel, expands the sweep's parent row, waits for
the children's names, and saves the picture. The server (its whole process group) is stopped
at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlflow_server  # noqa: E402  (benchmarks/mlflow_server.py: start and stop a local server)

COLUMNS = ("point.x", "derivatives.dy/dx", "derivatives.dz/dx", "checks.dz/dx.passed")  # a param, metrics
SWEEP = ["-m", "experiment=seed_persistent", "point.x=1.0,2.0,3.0", "log.mlflow=sqlite:///mlflow.db"]


def widen(page: Any, header: str, by: int) -> None:
    """Drag the right edge of a column's header `by` pixels to the right."""
    box = page.locator("[role=columnheader]", has_text=header).first.bounding_box()
    if box:
        x, y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + by, y, steps=8)
        page.mouse.up()


def columns(page: Any, show: Sequence[str], hide: Sequence[str]) -> None:
    """Tick metrics in the "Columns" menu (found by its search box), untick empty attributes."""
    page.get_by_role("button", name="Columns").first.click()
    search = page.get_by_placeholder("Search columns")
    search.wait_for(timeout=10000)
    for name in [*hide, *show]:
        search.fill(name)
        page.wait_for_timeout(300)
        item = page.get_by_text(name, exact=True)
        if item.count():
            item.last.click()
    search.fill("")
    page.keyboard.press("Escape")


def shoot(url: str, out: Path, browser: str) -> None:
    from playwright.sync_api import sync_playwright

    runs = f"{url}/#/experiments/1/runs"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        try:
            page = b.new_page(viewport={"width": 1400, "height": 520})
            page.goto(runs)
            page.get_by_text("Model training").first.click(timeout=30000)  # the UI opens in its GenAI view
            page.goto(runs)
            parent = page.get_by_text("sweep ").first
            parent.wait_for(timeout=30000)  # not networkidle: the UI polls
            if page.get_by_text("Got it").count():
                page.get_by_text("Got it").first.click()
            close = page.locator("button[aria-label='Close']")  # the assistant's side panel
            if close.count():
                close.last.click()
            row = page.locator("[role=row]", has_text="sweep ").first
            row.locator("button").first.click()  # expand the parent
            page.get_by_text("seed_persistent #2").first.wait_for(timeout=30000)
            widen(page, "Run Name", 110)  # the children's names whole, "#N" included
            columns(page, COLUMNS, ("Dataset", "Source", "Models"))
            for name in COLUMNS:
                widen(page, name, 45)
            page.get_by_text("Runs", exact=True).last.click()  # the focus off the menu's button
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out))
        finally:
            b.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).resolve().parent / "mlflow_ui.png")
    parser.add_argument("--browser", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "runner", *SWEEP], cwd=work, env=env, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"the sweep exited {done.returncode}")
        proc, url = mlflow_server.start(work, work / "mlflow.db", ["--default-artifact-root", str(work / "mlruns")])
        try:
            shoot(url, args.out.resolve(), args.browser)
        finally:
            mlflow_server.stop(proc)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
