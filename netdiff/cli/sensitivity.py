"""``netdiff sensitivity MODEL --target int8|nnie8|fp16``: layers ranked by quantization cost, and what to keep in float."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netdiff.cli._common import InputOpt, SeedOpt, WeightsOpt, console, model_options, parse_options
from netdiff.cli.app import app
from netdiff.cli.simulate import (CalibConfigOpt, CalibLimitOpt, CalibOpt, LayoutOpt, MeanOpt, OrderOpt, ScaleOpt,
                                  SimOptionOpt, SizeOpt, StdOpt, preprocess_from_flags)


@app.command("sensitivity")
def sensitivity_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Float model (.onnx, Caffe .prototxt).")],
    target: Annotated[str, typer.Option("--target", "-t", metavar="[int8|nnie8|fp16]", rich_help_panel="Target", help="Target kind: int8 (nodes kept in float), nnie8 "
                                                                "(layers run at 16 bits, _hp) or fp16 (nodes kept "
                                                                "in float32, Ascend --keep_dtype).")] = "int8",
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
    target_cosine: Annotated[float, typer.Option("--target-cosine", metavar="FLOAT", rich_help_panel="Thresholds", help="Output cosine the float-kept set must reach.")] = 0.999,
    max_exclude: Annotated[int | None, typer.Option("--max-exclude", metavar="N", rich_help_panel="Target", help="Keep at most N nodes in float.")] = None,
    top: Annotated[int, typer.Option("--top", metavar="N", rich_help_panel="Outputs", help="Rows of each ranking to show.")] = 10,
    json_path: Annotated[Path | None, typer.Option("--json", metavar="FILE.json", rich_help_panel="Outputs", help="Write rankings and the exclusion list as JSON.")] = None,
    keep_dtype: Annotated[Path | None, typer.Option("--keep-dtype", metavar="FILE.cfg", rich_help_panel="Outputs", help="fp16: write the nodes to keep in float32 "
                                                    "as an Ascend ATC --keep_dtype file.")] = None,
    weights: WeightsOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Rank layers by how much int8 (NNIE 8-bit, float16) costs at the outputs; print the float (or _hp) set reaching --target-cosine.

    Exit 0 when the target cosine is reached, 1 when it is not.
    """
    from netdiff._io import check_output_files, write_text_atomic
    from netdiff.errors import NetdiffError
    from netdiff.inputs import parse_input_args
    from netdiff.progress import terminal_progress
    from netdiff.sensitivity import analyze_sensitivity

    if keep_dtype is not None and target != "fp16":
        raise NetdiffError("--keep-dtype writes Ascend's float16 keep list: use it with --target fp16")
    check_output_files({"--json": json_path, "--keep-dtype": keep_dtype})
    result = analyze_sensitivity(model, parse_input_args(input or []), kind=target, calibration=calib,
                                 preprocess=preprocess_from_flags(calib_config, size, mean, std, scale, channel_order, layout),
                                 calibration_limit=calib_limit, options=parse_options(option, "--option"),
                                 target_cosine=target_cosine, max_exclude=max_exclude, seed=seed,
                                 model_options=model_options(weights), progress=terminal_progress())
    if json_path is not None:
        import json

        from netdiff.types import _jsonable

        write_text_atomic(json_path, json.dumps(_jsonable(result.to_dict()), indent=2, allow_nan=False) + "\n")
    if keep_dtype is not None:
        write_text_atomic(keep_dtype, result.keep_dtype_cfg())
    console().print(SensitivityView(result, top=top))
    raise typer.Exit(0 if result.reached else 1)


class SensitivityView:
    """Both rankings, the greedy steps and the paste-ready exclusion list."""

    def __init__(self, result, top: int = 10) -> None:
        self.result = result
        self.top = top

    def __rich_console__(self, console, options):
        from rich.panel import Panel
        from rich.text import Text

        r = self.result
        nnie = r.kind.startswith("nnie")
        fp16 = r.kind == "fp16"
        yield Text(f"{r.kind} ({r.quantization}); {r.inputs} evaluation input(s); fully quantized output cosine "
                   f"{_num(r.baseline_cosine)}; {r.evaluations} quantized models evaluated")
        titles = (("cost of only this layer at 8 bits (the others at 16)", "recovered by this layer alone at 16 bits")
                  if nnie else ("cost of only this layer in float16", "recovered by keeping only this layer in float32")
                  if fp16 else ("cost of quantizing only this layer", "recovered by keeping only this layer in float"))
        kept_col = "16-bit cos" if nnie else "float cos"
        for title, rows, key in ((titles[0], r.layers, "cost"), (titles[1], r.by_recovery(), "recovery")):
            yield _ranking_table(title, rows[: self.top], kept_col, key, options.max_width)
        status = Text("reached" if r.reached else "NOT reached", style="bold green" if r.reached else "bold red")
        kept = "layer(s) at 16 bits" if nnie else "node(s) kept in float32" if fp16 else "node(s) kept in float"
        body = Text.assemble(f"{len(r.exclude)} {kept} -> output cosine {_num(r.final_cosine)} "
                             f"(target {r.target_cosine}, ", status, ")\n", (r.snippet(), "bold"))
        title = ("mixed precision: nnie_mapper [compile_mode] 2 + _hp layers" if nnie
                 else "mixed precision: atc --keep_dtype (write it with --keep-dtype FILE)" if fp16
                 else "mixed precision: quantize_static(..., nodes_to_exclude=...)")
        yield Panel(body, title=Text(title), title_align="left", border_style="cyan")


def _ranking_table(title: str, rows: list, kept_col: str, key: str, width: int):
    """One ranking, fitted to the terminal: op and the column the ranking is not about go first."""
    from netdiff.reports.fit import Column, NameCell, fit_table, fixed_format

    cost_style = fixed_format([s.cost for s in rows], 2, small=0.01)
    recovery_style = fixed_format([s.recovery for s in rows], 2, small=0.01)
    columns = [Column("#", justify="right"), Column("node", names=True), Column("op", style="dim", drop=1),
               Column("alone cos", justify="right", drop=3 if key == "recovery" else None),
               Column("cost", justify="right", drop=2 if key == "recovery" else None),
               Column(kept_col, justify="right", drop=3 if key == "cost" else None),
               Column("recovery", justify="right", drop=2 if key == "cost" else None)]
    for i, s in enumerate(rows, 1):
        cells = [str(i), NameCell(s.node), s.op_type, _num(s.alone_cosine), _num(s.cost, 2, cost_style),
                 _num(s.float_cosine), _num(s.recovery, 2, recovery_style)]
        for column, cell in zip(columns, cells):
            column.cells.append(cell)
    return fit_table(columns, width, title=title)


def _num(value: float, digits: int = 6, style: str = "f") -> str:
    """Cosines with 6 decimals; costs and recoveries in their column's format (2 decimals or exponent)."""
    from netdiff.reports.fit import number

    if value is None:
        return "nan"
    return number(value, digits, style)
