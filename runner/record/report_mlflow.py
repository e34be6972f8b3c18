"""`python -m runner.report --mlflow URI [RUN_ID]`: the report's tables, read back from an
MLflow tracking store (`log.mlflow`) instead of from folders.

Without RUN_ID: every run and sweep the store holds (top-level runs tagged `runner.kind`
`run` or `sweep`; `--experiment NAME`: that experiment's only), as the listing of a folder of
runs. With RUN_ID: that run in full, or for a sweep's parent run its summary table and
groups (its children are its jobs). `--json` and `--md` as for folders; `--diff` takes folders.

The runs' artifacts (`results.json`, `.hydra/`; a sweep's `multirun.yaml`; every artifact of
the one run shown in full) are downloaded into a temporary folder laid out as the runner lays
out its outputs (a run's folder; a sweep's folder with one sub-folder per job, named as the
job's own folder was), which `runner.report` then shows with the same code as any folder: the
same tables by construction. Where a folder would be named, the run id is shown (`mlflow run:
ID (experiment N) at URI` for the one run shown in full). The temporary folder is removed
afterwards. What only a sweep's folder holds is not in the store: a `progress:` line, and jobs
that raised before writing their log. MLflow is imported only here (`mlflow_store`).

A store that cannot be read (not reachable, a `sqlite:` file that does not exist: it is not
made), an unknown experiment or run: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from runner.record import log_reader, mlflow_store, runlog

Show = Callable[[Path, argparse.Namespace, Any], Optional[str]]
Finish = Callable[[str, Any, int], int]
KIND_TAG = "runner.kind"
_ARTIFACTS = (runlog.RESULTS_FILE, ".hydra")  # what the report reads of a run
_MULTIRUN = "multirun.yaml"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=,+-]{0,127}")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mlflow", metavar="URI", help="read the runs back from this MLflow tracking store; PATH: a run id (optional)"
    )
    parser.add_argument("--experiment", metavar="NAME", help="with --mlflow: only this MLflow experiment's runs")


def main(args: argparse.Namespace, parser: argparse.ArgumentParser, show: Show, finish: Finish, logs: Any) -> int:
    """`runner.report`'s main under `--mlflow`: `show` renders a folder as the report does
    (into `logs`, `runner.report.Logs`), `finish` prints it and gives the exit code."""
    if args.diff:
        parser.error("--diff takes run folders, not --mlflow")
    if args.experiment is not None and args.path is not None:
        parser.error("--experiment lists runs; with a RUN_ID it is not needed")
    try:
        store = open_store(args.mlflow)
        with tempfile.TemporaryDirectory(prefix="runner-report-mlflow-") as tmp:
            root = Path(tmp)
            if args.path is not None:
                target, labels = lay_out_one(store, str(args.path), root)
            else:
                target, labels = root, lay_out_all(store, args.experiment, root)
            text = show(target, args, logs) or ""
            text = relabel(text, labels)
            logs.bad = [relabel(line, labels) for line in logs.bad]
    except mlflow_store.TrackingError as err:
        print(str(err), file=sys.stderr)
        return 2
    except log_reader.BadLog as err:  # the one run shown in full
        logs.bad.append(relabel(f"bad run log: {err}", labels))
        text = ""
    return finish(text, logs, 0)


def open_store(uri: str) -> mlflow_store.Reader:
    """The store at `uri`; a `sqlite:` file that does not exist is an error (MLflow would make it)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :].split("?")[0])
        if not path.is_file():
            raise mlflow_store.TrackingError(f"no MLflow store at {uri}: {path} is not a file")
    return mlflow_store.Reader(uri)


def _kind(run: Any) -> str:
    return str(run.data.tags.get(KIND_TAG, ""))


def _mlflow_line(store: mlflow_store.Reader, run: Any) -> str:
    return f"mlflow run: {run.info.run_id} (experiment {run.info.experiment_id}) at {store.uri}"


def lay_out_one(store: mlflow_store.Reader, run_id: str, root: Path) -> Tuple[Path, Dict[str, str]]:
    """The run `run_id` as a folder under `root` (a sweep's parent: a sweep folder with its
    children), and the labels of its folders."""
    run = store.run(run_id)
    folder = root / run.info.run_id
    labels = {str(folder): run.info.run_id}
    if _kind(run) == "sweep":
        children = store.runs([run.info.experiment_id], f"tags.`{mlflow_store.PARENT_TAG}` = '{run.info.run_id}'")
        labels.update(_sweep(store, run, children, folder))
    else:
        store.download(run.info.run_id, folder)
    # the lines naming the folder name the run; `python -m runner.rerun` takes the folder downloaded
    labels = {
        f"run folder: {folder}": _mlflow_line(store, run),
        f"sweep folder: {folder}": _mlflow_line(store, run),
        f"python -m runner.rerun {folder}": (
            f"mlflow artifacts download -r {run.info.run_id} -d DIR, then python -m runner.rerun DIR"
        ),
        **labels,
    }
    return folder, labels


def lay_out_all(store: mlflow_store.Reader, experiment: Optional[str], root: Path) -> Dict[str, str]:
    """Every top-level run and sweep of the store (or of `experiment`) as folders under `root`."""
    runs = store.runs(store.experiment_ids(experiment))
    children: Dict[str, List[Any]] = {}
    for run in runs:
        parent = run.data.tags.get(mlflow_store.PARENT_TAG)
        if parent and _kind(run) == "job":
            children.setdefault(parent, []).append(run)
    labels = {str(root): store.uri}
    for run in runs:
        if run.data.tags.get(mlflow_store.PARENT_TAG) or _kind(run) not in ("run", "sweep"):
            continue
        folder = root / run.info.run_id
        labels[str(folder)] = run.info.run_id
        if _kind(run) == "sweep":
            labels.update(_sweep(store, run, children.get(run.info.run_id, []), folder))
        else:
            store.download(run.info.run_id, folder, _ARTIFACTS)
    return labels


def _sweep(store: mlflow_store.Reader, parent: Any, children: List[Any], folder: Path) -> Dict[str, str]:
    """A sweep folder: the parent's `multirun.yaml`, one sub-folder per job (named as the
    job's folder was; of two children of one job, a resumed sweep's, the later)."""
    store.download(parent.info.run_id, folder, (_MULTIRUN,))
    if not (folder / _MULTIRUN).is_file():  # a sweep not ended yet: its parent holds no files
        (folder / _MULTIRUN).write_text("# not in the MLflow store yet: the sweep has not ended\n")
    jobs: Dict[str, Any] = {}
    for child in sorted(children, key=lambda r: r.info.start_time or 0):
        jobs[_job_name(child)] = child
    labels = {}
    for name, child in jobs.items():
        store.download(child.info.run_id, folder / name, _ARTIFACTS)
        labels[str(folder / name)] = child.info.run_id
    return labels


def _job_name(run: Any) -> str:
    """The name of a job's folder in its sweep: as it was, else its job number, else its run id."""
    tags = run.data.tags
    for name in (Path(tags.get("runner.output_dir", "")).name, tags.get("runner.job_num", "")):
        if _SAFE_NAME.fullmatch(name) and name not in (".", ".."):
            return name
    return str(run.info.run_id)


def relabel(text: str, labels: Dict[str, str]) -> str:
    """`text` with each temporary path (the longest first) replaced by what it stands for."""
    for path in sorted(labels, key=len, reverse=True):
        text = text.replace(path, labels[path])
    return text
