"""A local `mlflow server` for benchmarks/mlflow_cost.py and docs/images/mlflow_ui_screenshot.py:
started on a free port of 127.0.0.1 in a session of its own, stopped by its process group
(uvicorn's worker and MLflow 3's job-queue consumers: about 9 processes with --workers 1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Tuple


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(work: Path, store: Path, artifacts: List[str]) -> "Tuple[subprocess.Popen[bytes], str]":
    """`mlflow server` over the sqlite database `store` (`artifacts`: its artifact flags),
    logging into work/server.log; returns the process and its URL once /health answers."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}", *artifacts,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (work / "server.log").open("wb")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited {proc.returncode}: {(work / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError("mlflow server did not answer /health within 2 minutes")


def stop(proc: "subprocess.Popen[bytes]") -> None:
    """SIGTERM to the server's process group, then wait (SIGKILL after 30 s)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
