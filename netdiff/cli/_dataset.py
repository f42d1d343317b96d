"""Options of ``compare`` and ``run`` for a samples directory (``--input DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", metavar="N", rich_help_panel="Samples", help="Worker processes for a samples directory (default: the machine's cores, once the samples "
                                "take long enough to pay for starting them); the results do not depend on it.")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", metavar="[local|dask]", rich_help_panel="Samples", help="Where samples run: local (worker processes) or dask (a Dask cluster, see --address; "
                     "pip install 'netdiff[dask]').")]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", metavar="ADDRESS", rich_help_panel="Samples", help="Dask scheduler address for --engine dask (e.g. tcp://10.0.0.5:8786).")]
WorstOpt = Annotated[int, typer.Option(
    "--diagnose-worst", metavar="K", rich_help_panel="Samples", help="Samples diagnosed in full (findings, isolated re-runs), worst first.")]
LabelsOpt = Annotated[Path | None, typer.Option(
    "--labels", metavar="FILE", rich_help_panel="Samples", help="Labels of the samples (JSON {id: class} or lines 'id,class'): accuracy of both sides.")]
TaskOpt = Annotated[list[str] | None, typer.Option(
    "--task", metavar="KIND|OUTPUT=KIND", rich_help_panel="Samples", help="How outputs are judged, instead of the inferred task: KIND or OUTPUT=KIND "
                   "(classification, detection, other); repeatable.")]


def dataset_options(jobs: int | None, engine: str, address: str | None, diagnose_worst: int,
                    labels: Path | None, task: list[str] | None, progress: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`netdiff.dataset.compare_dataset` / ``run_dataset`` from the flags."""
    from netdiff.dataset import ENGINES, parse_task_args
    from netdiff.errors import InputError

    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1, not {jobs}")
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return dict(jobs=jobs, engine=engine, address=address, diagnose_worst=diagnose_worst, labels=labels,
                tasks=parse_task_args(task), progress=progress)


def print_dataset(report: Any) -> None:
    """The dataset section on the terminal (before the worst sample's layer table)."""
    from netdiff.cli._common import console
    from netdiff.reports.dataset import DatasetView

    if "dataset" in report.meta:
        console().print(DatasetView(report))
