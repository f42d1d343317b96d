"""``netdiff compare REFERENCE TARGET``: per-layer divergence, first divergence, causes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import SeedOpt, WeightsOpt, console, model_options, parse_options
from netdiff.cli._dataset import (AddressOpt, EngineOpt, JobsOpt, LabelsOpt, TaskOpt, WorstOpt, dataset_options,
                                  print_dataset)
from netdiff.cli.app import app
from netdiff.cli.simulate import LayoutOpt, MeanOpt, OrderOpt, ScaleOpt, SizeOpt, StdOpt, preprocess_from_flags


@app.command("compare")
def compare_command(
    reference: Annotated[Path, typer.Argument(metavar="REFERENCE", help="Reference: model (.onnx, Caffe .prototxt) or dump (directory, .npz, ...).")],
    target: Annotated[Path, typer.Argument(metavar="TARGET", help="Target: dump (directory, .npz, device dump) or a second model.")],
    input: Annotated[list[str] | None, typer.Option(
        "--input", "-i", metavar="NAME=FILE", rich_help_panel="Inputs", help="Model input: NAME=FILE.npy (repeatable) or FILE.npy / FILE.npz; a directory of samples "
                              "or several FILEs (.npy/.npz/.png/.jpg) compares per sample (--jobs, --labels, --task). Without it, a seeded random input is used.")] = None,
    mapping: Annotated[Path | None, typer.Option("--map", metavar="FILE.json", rich_help_panel="Alignment", help="JSON {target_name: reference_name} pairs.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", metavar="FILE.json", rich_help_panel="Outputs", help="Write the JSON report here.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", metavar="FILE.csv", rich_help_panel="Outputs", help="Write the CSV report (msaccucmp column names).")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", metavar="FILE.html", rich_help_panel="Outputs", help="Write a self-contained HTML report.")] = None,
    model_explorer_path: Annotated[Path | None, typer.Option("--model-explorer", metavar="FILE.json", rich_help_panel="Outputs", help="Write per-node cosine as Google Model Explorer node data JSON.")] = None,
    cosine_threshold: Annotated[float, typer.Option("--cosine-threshold", metavar="FLOAT", rich_help_panel="Thresholds", help="A layer diverges below this cosine.")] = 0.99,
    rel_l2_threshold: Annotated[float, typer.Option("--rel-l2-threshold", metavar="FLOAT", rich_help_panel="Thresholds", help="A layer diverges above this rel_l2.")] = 0.05,
    precision: Annotated[str | None, typer.Option("--precision", metavar="[int8|uint8|int16|int4|fp16|bf16|nnie8|nnie16]", rich_help_panel="Thresholds", help="The target's precision (int8, uint8, int16, int4, fp16, bf16, nnie8, nnie16) for a dump; a quantized or fp16 target model tells its own. Layers within its expected noise are 'noisy', not diverged.")] = None,
    noise_factor: Annotated[float, typer.Option("--noise-factor", metavar="FLOAT", rich_help_panel="Thresholds", help="With a known precision, a layer beyond the thresholds is noisy up to this many times its expected noise.")] = 4.0,
    show_all: Annotated[bool, typer.Option("--all", rich_help_panel="Outputs", help="Show every layer, not only those around origins and the worst.")] = False,
    reference_format: Annotated[str | None, typer.Option("--reference-format", metavar="KEY", rich_help_panel="Formats", help="Force the reference's format (reader or runner key).")] = None,
    target_format: Annotated[str | None, typer.Option("--target-format", metavar="KEY", rich_help_panel="Formats", help="Force the target's format (reader or runner key).")] = None,
    fusion_map: Annotated[Path | None, typer.Option("--fusion-map", metavar="OM.json", rich_help_panel="Alignment", help="Ascend om JSON (atc --mode=1) mapping NPU ops to original nodes.")] = None,
    side: Annotated[str | None, typer.Option("--side", metavar="[golden|simulator|runtime]", rich_help_panel="Alignment", help="Which side of an RKNN snapshot is the target (golden, simulator, runtime).")] = None,
    target_option: Annotated[list[str] | None, typer.Option("--option", "-O", "--target-option", metavar="KEY=VALUE", rich_help_panel="Formats", help="Reader option KEY=VALUE for the target (repeatable; --target-option is the old spelling).")] = None,
    weights: WeightsOpt = None,
    isolated: Annotated[str, typer.Option("--isolated", metavar="[origins|all|none]", rich_help_panel="Diagnosis", help="Re-run single reference nodes on the target's inputs (isolated error): origins, all or none.")] = "origins",
    score_threshold: Annotated[float, typer.Option("--score-threshold", metavar="FLOAT", rich_help_panel="Diagnosis", help="Detector heads keep boxes scoring at least this (detection summary, \"no boxes\").")] = 0.5,
    naming: Annotated[str | None, typer.Option("--naming", metavar="[blob|layer]", rich_help_panel="Alignment", help="How the target names a Caffe net's tensors: blob (in-place layers share their blob's name, as NNIE dumps do) or layer. Default: detected.")] = None,
    no_diagnose: Annotated[bool, typer.Option("--no-diagnose", rich_help_panel="Diagnosis", help="Skip cause diagnosis.")] = False,
    seed: SeedOpt = 0,
    jobs: JobsOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    diagnose_worst: WorstOpt = 1,
    labels: LabelsOpt = None,
    task: TaskOpt = None,
    size: SizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    scale: ScaleOpt = None,
    channel_order: OrderOpt = None,
    layout: LayoutOpt = None,
) -> None:
    """Compare every tensor of TARGET with REFERENCE; exit 1 when a layer diverges."""
    from netdiff.inputs import parse_input_args
    from netdiff.dataset import compare_dataset
    from netdiff.multisample import sample_args
    from netdiff.pipeline import compare
    from netdiff.progress import terminal_progress
    from netdiff.reports.terminal import ReportView
    from netdiff.types import Thresholds

    from netdiff._io import check_output_files
    from netdiff.noise import precision_hint

    check_output_files({"--json": json_path, "--csv": csv_path, "--html": html_path,
                        "--model-explorer": model_explorer_path},
                       inputs=(reference, target, mapping, fusion_map, *(v.rpartition("=")[2] for v in input or [])))
    target_options = parse_options(target_option, "--option")
    known = precision_hint(precision) if precision is not None else None
    if fusion_map is not None:
        target_options["fusion_map"] = str(fusion_map)
    if side is not None:
        target_options["side"] = side
    common = dict(reference_format=reference_format, target_format=target_format,
                  reference_options=model_options(weights), target_options=target_options, mapping=mapping,
                  thresholds=Thresholds(cosine_threshold, rel_l2_threshold, noise_factor), seed=seed, precision=known,
                  diagnose=not no_diagnose, isolated=isolated, score_threshold=score_threshold,
                  naming=naming)
    samples = sample_args(input or [])
    if samples is not None:
        report = compare_dataset(reference, target, samples, **common,
                                 preprocess=preprocess_from_flags(None, size, mean, std, scale, channel_order, layout),
                                 **dataset_options(jobs, engine, address, diagnose_worst, labels, task,
                                                   terminal_progress()))
    else:
        report = compare(reference, target, parse_input_args(input or []), **common, progress=terminal_progress())
    write_outputs(report, json_path, csv_path, html_path)
    if model_explorer_path is not None:
        from netdiff.reports.model_explorer import write_node_data

        write_node_data(report, model_explorer_path)
    print_dataset(report)
    console().print(ReportView(report, show_all=show_all))
    raise typer.Exit(1 if report.failed else 0)


def write_outputs(report, json_path: Path | None, csv_path: Path | None, html_path: Path | None) -> None:
    """Write the requested report files (each atomically)."""
    if json_path is not None:
        from netdiff.reports.json import write_json

        write_json(report, json_path)
    if csv_path is not None:
        from netdiff.reports.csv import write_csv

        write_csv(report, csv_path)
    if html_path is not None:
        from netdiff.reports.html import write_html

        write_html(report, html_path)
