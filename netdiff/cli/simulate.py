"""``netdiff simulate MODEL --target KIND --out DUMP``: predict a target's dump without hardware.

Also holds the options ``run`` and ``sensitivity`` share (target kind, calibration, preprocessing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console, model_options, parse_options
from netdiff.cli.app import app
from netdiff.simulators import get_simulator, simulator_names


def _kinds_help() -> str:
    lines = []
    for name in simulator_names():
        sim = get_simulator(name)
        opts = f" (options: {', '.join(sim.options)})" if sim.options else ""
        lines.append(f"{name}: {sim.summary}{opts}")
    return "Target kind. " + "; ".join(lines) + "."


TargetOpt = Annotated[str, typer.Option("--target", "-t", metavar="KIND", rich_help_panel="Target", help=_kinds_help())]
CalibOpt = Annotated[Path | None, typer.Option(
    "--calib", metavar="DIR|FILE", rich_help_panel="Calibration and preprocessing", help="Calibration samples: a directory (or file) of .npy/.npz samples or PNG/JPEG images. "
                    "Default: the --input itself.")]
CalibConfigOpt = Annotated[Path | None, typer.Option(
    "--calib-config", metavar="FILE.json|FILE.toml", rich_help_panel="Calibration and preprocessing", help="JSON/TOML file with image preprocessing keys (size, channel_order, mean, std, scale, "
                           "layout); command-line flags override it.")]
CalibLimitOpt = Annotated[int | None, typer.Option("--calib-limit", metavar="N", rich_help_panel="Calibration and preprocessing", help="Use at most N calibration samples.")]
SizeOpt = Annotated[str | None, typer.Option("--size", metavar="HxW", rich_help_panel="Calibration and preprocessing", help="Image resize HEIGHTxWIDTH (default: the input's size).")]
MeanOpt = Annotated[str | None, typer.Option("--mean", metavar="M1,M2,M3", rich_help_panel="Calibration and preprocessing", help="Per-channel mean, comma-separated (after --scale).")]
StdOpt = Annotated[str | None, typer.Option("--std", metavar="S1,S2,S3", rich_help_panel="Calibration and preprocessing", help="Per-channel std, comma-separated.")]
ScaleOpt = Annotated[float | None, typer.Option("--scale", metavar="FLOAT", rich_help_panel="Calibration and preprocessing", help="Pixel factor applied first (1/255 = 0.00392156862745).")]
OrderOpt = Annotated[str | None, typer.Option("--channel-order", metavar="[rgb|bgr|gray]", rich_help_panel="Calibration and preprocessing", help="rgb (default), bgr or gray.")]
LayoutOpt = Annotated[str | None, typer.Option("--layout", metavar="[nchw|nhwc]", rich_help_panel="Calibration and preprocessing", help="nchw or nhwc (default: from the input shape).")]
SimOptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", "-O", metavar="KEY=VALUE", rich_help_panel="Target", help="Simulator option KEY=VALUE (repeatable), e.g. -O per_channel=true -O calibrate=entropy.")]


def preprocess_from_flags(config: Path | None, size: str | None, mean: str | None, std: str | None,
                          scale: float | None, channel_order: str | None, layout: str | None) -> Any:
    """The preprocessing spec from a config file overridden by flags (None when nothing is given)."""
    from dataclasses import asdict

    from netdiff.calibration import Preprocess, load_preprocess

    base = load_preprocess(config) if config is not None else None
    data: dict[str, Any] = asdict(base) if base is not None else {}
    if size is not None:
        parts = size.lower().replace(",", "x").split("x")
        data["size"] = [p.strip() for p in parts] if len(parts) == 2 else parts[0]
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            data[key] = [v.strip() for v in value.split(",") if v.strip()]
    for key, value in (("scale", scale), ("channel_order", channel_order), ("layout", layout)):
        if value is not None:
            data[key] = value.lower() if isinstance(value, str) else value
    return Preprocess.from_mapping(data, "preprocessing flags") if data else None


def check_kind(kind: str) -> str:
    """Raise the registry's error (listing the kinds) for an unknown kind."""
    get_simulator(kind)
    return kind


@app.command("simulate")
def simulate_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Float model (.onnx, Caffe .prototxt).")],
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", rich_help_panel="Outputs", help="Output dump directory (manifest.json + .npy files).")],
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
    weights: WeightsOpt = None,
    force: Annotated[bool, typer.Option("--force", rich_help_panel="Outputs", help="Write into a non-empty directory.")] = False,
    seed: SeedOpt = 0,
) -> None:
    """Simulate the TARGET kind of MODEL and write its dump (comparable with `netdiff compare`)."""
    from netdiff.inputs import parse_input_args
    from netdiff.manifest import write_dump
    from netdiff.progress import terminal_progress
    from netdiff.simulators.run import simulate

    from netdiff._io import check_output_dir

    check_output_dir(out, "--out", force=force)
    sim = simulate(model, check_kind(target), parse_input_args(input or []), calibration=calib,
                   preprocess=preprocess_from_flags(calib_config, size, mean, std, scale, channel_order, layout),
                   calibration_limit=calib_limit, options=parse_options(option, "--option"),
                   model_options=model_options(weights), seed=seed, progress=terminal_progress())
    written = write_dump(sim.target, out, force=force)
    meta = sim.target.meta
    placed = meta.get("placed")
    extra = f", {placed} of {meta.get('float_tensors')} float tensors placed" if placed is not None else ""
    console().print(f"wrote {len(sim.target)} tensors of the simulated {target} target{extra} to {written}")
