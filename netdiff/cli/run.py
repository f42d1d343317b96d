"""``netdiff run MODEL --target KIND``: simulate a target and compare it layer by layer in one step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console, model_options, parse_options
from netdiff.cli._dataset import (AddressOpt, EngineOpt, JobsOpt, LabelsOpt, TaskOpt, WorstOpt, dataset_options,
                                  print_dataset)
from netdiff.cli.app import app
from netdiff.cli.simulate import (CalibConfigOpt, CalibLimitOpt, CalibOpt, LayoutOpt, MeanOpt, OrderOpt, ScaleOpt,
                                  SimOptionOpt, SizeOpt, StdOpt, TargetOpt, check_kind, preprocess_from_flags)


@app.command("run")
def run_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Float model (.onnx, Caffe .prototxt).")],
    target: TargetOpt,
    input: InputOpt = None,
    calib: CalibOpt = None,
    calib_config: CalibConfigOpt = None,
    calib_limit: CalibLimitOpt = None,
    size: SizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    scale: ScaleOpt = None,
    channel_order: OrderOpt = None,
    layout: LayoutOpt = None,
    option: SimOptionOpt = None,
    mapping: Annotated[Path | None, typer.Option("--map", metavar="FILE.json", rich_help_panel="Alignment", help="JSON {target_name: reference_name} pairs.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", metavar="FILE.json", rich_help_panel="Outputs", help="Write the JSON report here.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", metavar="FILE.csv", rich_help_panel="Outputs", help="Write the CSV report (msaccucmp column names).")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", metavar="FILE.html", rich_help_panel="Outputs", help="Write a self-contained HTML report.")] = None,
    cosine_threshold: Annotated[float, typer.Option("--cosine-threshold", metavar="FLOAT", rich_help_panel="Thresholds", help="A layer diverges below this cosine.")] = 0.99,
    rel_l2_threshold: Annotated[float, typer.Option("--rel-l2-threshold", metavar="FLOAT", rich_help_panel="Thresholds", help="A layer diverges above this rel_l2.")] = 0.05,
    noise_factor: Annotated[float, typer.Option("--noise-factor", metavar="FLOAT", rich_help_panel="Thresholds", help="A layer beyond the thresholds is noisy up to this many times the simulated precision's expected noise.")] = 4.0,
    show_all: Annotated[bool, typer.Option("--all", rich_help_panel="Outputs", help="Show every layer, not only those around origins and the worst.")] = False,
    no_isolated: Annotated[bool, typer.Option("--no-isolated", rich_help_panel="Diagnosis", help="Skip the isolated (single-layer) runs.")] = False,
    no_diagnose: Annotated[bool, typer.Option("--no-diagnose", rich_help_panel="Diagnosis", help="Skip cause diagnosis.")] = False,
    weights: WeightsOpt = None,
    seed: SeedOpt = 0,
    jobs: JobsOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    diagnose_worst: WorstOpt = 1,
    labels: LabelsOpt = None,
    task: TaskOpt = None,
) -> None:
    """Simulate TARGET for MODEL and compare every layer: accumulated and isolated error; exit 1 on divergence."""
    from netdiff._io import check_output_files
    from netdiff.cli.compare import write_outputs
    from netdiff.dataset import run_dataset
    from netdiff.inputs import parse_input_args
    from netdiff.multisample import sample_args
    from netdiff.progress import terminal_progress
    from netdiff.reports.terminal import ReportView
    from netdiff.simulators.run import run_simulated
    from netdiff.types import Thresholds

    check_output_files({"--json": json_path, "--csv": csv_path, "--html": html_path})
    common = dict(calibration=calib,
                  preprocess=preprocess_from_flags(calib_config, size, mean, std, scale, channel_order, layout),
                  calibration_limit=calib_limit, options=parse_options(option, "--option"),
                  thresholds=Thresholds(cosine_threshold, rel_l2_threshold, noise_factor), mapping=mapping,
                  isolated=not no_isolated, diagnose=not no_diagnose, model_options=model_options(weights), seed=seed)
    samples = sample_args(input or [])
    if samples is not None:
        report = run_dataset(model, check_kind(target), samples, **common,
                             **dataset_options(jobs, engine, address, diagnose_worst, labels, task,
                                               terminal_progress()))
    else:
        report = run_simulated(model, check_kind(target), parse_input_args(input or []), **common,
                               progress=terminal_progress())
    write_outputs(report, json_path, csv_path, html_path)
    out = console()
    print_dataset(report)
    sim = report.meta.get("simulator", {})
    out.print(f"simulated {sim.get('kind')} ({sim.get('summary')}): {sim.get('aligned')} of {sim.get('in_target')} "
              f"target tensors aligned ({sim.get('float_tensors')} float tensors, {sim.get('content_checked')} placed "
              f"by content); calibration: {sim.get('calibration', {}).get('source')}; "
              f"isolated cos = that layer alone on float inputs")
    out.print(ReportView(report, show_all=show_all))
    raise typer.Exit(1 if report.failed else 0)
