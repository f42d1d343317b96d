"""Simulate an int8 target with onnxruntime static quantization (QDQ format).

Calibration runs once per configuration (the tensor ranges are cached), so re-quantizing with
other ``nodes_to_exclude`` lists (sensitivity analysis) costs only the quantizer pass.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from netdiff._lazy import lazy_import
from netdiff.errors import ModelError, NetdiffError
from netdiff.simulators._prepared import Placement, PreparedTarget
from netdiff.simulators._qdq_names import place_qdq
from netdiff.simulators.base import Feeds, Simulator, register_simulator
from netdiff.types import Dump

np = lazy_import("numpy")
onnx = lazy_import("onnx")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("int8", "uint8")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Int8Config:
    """What users tune in onnxruntime's ``quantize_static``.

    Attributes:
        per_channel: Weights quantized per output channel (else per tensor).
        calibrate: Activation range calibration: "minmax", "entropy" or "percentile".
        percentile: Percentile kept by the "percentile" calibration.
        symmetric: Symmetric activation ranges (zero point 0); asymmetric by default.
        activation_type: "int8" or "uint8".
        weight_type: "int8" or "uint8".
        reduce_range: 7-bit weights (for CPUs without VNNI).
        exclude: Node names kept in float (``nodes_to_exclude``).
        op_types: Op types to quantize (empty: every type onnxruntime quantizes).
    """

    per_channel: bool = False
    calibrate: str = "minmax"
    percentile: float = 99.999
    symmetric: bool = False
    activation_type: str = "int8"
    weight_type: str = "int8"
    reduce_range: bool = False
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Int8Config:
        """Build from simulator options (strings from the command line or typed values)."""
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key in ("per_channel", "symmetric", "reduce_range"):
                values[key] = _bool(key, value)
            elif key == "percentile":
                try:
                    values[key] = float(value)
                except ValueError:
                    raise NetdiffError(f"option percentile: expected a number, got {value!r}") from None
            elif key in ("exclude", "op_types"):
                values[key] = tuple(x.strip() for x in value.split(",") if x.strip()) if isinstance(value, str) \
                    else tuple(value)
            else:
                values[key] = str(value).lower()
        config = cls(**values)
        if config.calibrate not in CALIBRATION_METHODS:
            raise NetdiffError(f"option calibrate: {config.calibrate!r} is not one of {', '.join(CALIBRATION_METHODS)}")
        for key in ("activation_type", "weight_type"):
            if getattr(config, key) not in QUANT_TYPES:
                raise NetdiffError(f"option {key}: {getattr(config, key)!r} is not one of {', '.join(QUANT_TYPES)}")
        if not 0 < config.percentile <= 100:
            raise NetdiffError(f"option percentile: {config.percentile} is not in (0, 100]")
        return config

    def describe(self) -> str:
        """Short form for report headers."""
        parts = ["per-channel" if self.per_channel else "per-tensor", self.calibrate,
                 "symmetric" if self.symmetric else "asymmetric", f"act {self.activation_type}", f"w {self.weight_type}"]
        if self.calibrate == "percentile":
            parts.append(f"p{self.percentile:g}")
        return ", ".join(parts)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise NetdiffError(f"option {key}: expected true or false, got {value!r}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantizer's root-logger warnings ("consider pre-processing")."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def named_copy(model: Any) -> Any:
    """A copy of ``model`` whose nodes all have names (the quantizer and alignment rely on them)."""
    from netdiff.runners.onnxrt import node_names

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node, name in zip(copy.graph.node, node_names(copy)):
        node.name = name
    return copy


#: Per-channel DequantizeLinear takes an ``axis`` attribute, which ONNX added in opset 13.
PER_CHANNEL_OPSET = 13


def _opset_for(model: Any, config: Int8Config) -> Any:
    """The model to hand the quantizer: upgraded to opset 13 when per-channel weights need it."""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=PER_CHANNEL_OPSET)
    if not config.per_channel or opset >= PER_CHANNEL_OPSET:
        return model
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, PER_CHANNEL_OPSET)
    except Exception as e:  # the converter raises plain exceptions
        raise ModelError(f"per-channel int8 needs opset {PER_CHANNEL_OPSET} (DequantizeLinear axis); upgrading the "
                         f"model from opset {opset} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                         "re-export it with opset >= 13") from e


class Int8Quantizer:
    """Quantize one float model many times with one calibration (ranges cached on disk)."""

    def __init__(self, model: Any, calibration: Sequence[Feeds], config: Int8Config) -> None:
        if not calibration:
            raise NetdiffError("int8 simulation needs calibration samples (--calib DIR, or at least --input)")
        self.model = named_copy(model)
        self.calibration = [dict(s) for s in calibration]
        self.config = config
        self._tmp = tempfile.TemporaryDirectory(prefix="netdiff-int8-")
        self._cache = Path(self._tmp.name) / "ranges.json"
        from onnxruntime.quantization import quantize_static

        self._cacheable = "calibration_cache_path" in inspect.signature(quantize_static).parameters
        # The quantizer rewrites a ModelProto it is given (external data): hand it a file instead.
        self._path = Path(self._tmp.name) / "model.float.onnx"
        to_quantize = _opset_for(self.model, config)
        large = to_quantize.ByteSize() > 1_800_000_000
        onnx.save_model(to_quantize, str(self._path), save_as_external_data=large,
                        location="model.float.data" if large else None)

    def quantize(self, exclude: Collection[str] = (), only: Collection[str] | None = None) -> Any:
        """Return the QDQ ModelProto, excluding ``exclude`` (and quantizing only ``only`` when given)."""
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        samples = self.calibration

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(samples)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._it, None)

        c = self.config
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[c.calibrate]
        qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
        extra: dict[str, Any] = {"ActivationSymmetric": c.symmetric, "WeightSymmetric": True}
        if c.calibrate == "percentile":
            extra["CalibPercentile"] = c.percentile
        kwargs: dict[str, Any] = {}
        if self._cacheable:
            kwargs["calibration_cache_path"] = str(self._cache)
        out = Path(self._tmp.name) / "model.int8.onnx"
        try:
            with _quiet():
                quantize_static(str(self._path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(c.op_types) or None, per_channel=c.per_channel,
                                reduce_range=c.reduce_range, activation_type=qtype[c.activation_type],
                                weight_type=qtype[c.weight_type], nodes_to_quantize=list(only) if only else None,
                                nodes_to_exclude=sorted({*c.exclude, *exclude}) or None,
                                calibrate_method=method, extra_options=extra, **kwargs)
            return onnx.load(str(out))
        except NetdiffError:
            raise
        except Exception as e:  # the quantizer raises plain exceptions
            raise ModelError(f"onnxruntime quantization failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e

    def prepare(self, exclude: Collection[str] = (), only: Collection[str] | None = None) -> Int8Target:
        """Quantize and open a session."""
        cfg = replace(self.config, exclude=tuple(sorted({*self.config.exclude, *exclude})))
        meta = {"quantization": cfg.describe(), "calibration_samples": len(self.calibration),
                "excluded": ",".join(cfg.exclude)}
        return Int8Target(self.model, self.quantize(exclude, only), meta)

    def quantizable_nodes(self, qdq_model: Any) -> list[str]:
        """Float node names that the quantizer quantized (a DequantizeLinear feeds them), in order."""
        dq_outputs = {n.output[0] for n in qdq_model.graph.node if n.op_type == "DequantizeLinear"}
        quantized = {n.name for n in qdq_model.graph.node
                     if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(x in dq_outputs for x in n.input)}
        return [n.name for n in self.model.graph.node if n.name in quantized]


class Int8Target(PreparedTarget):
    """A QDQ model: tensors placed by node name, then checked by content."""

    kind = "int8"

    def place(self, values: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray] | None) -> Placement:
        return place_qdq(self.float_model, self.model, values, reference)


@register_simulator("int8")
class Int8Simulator(Simulator):
    """onnxruntime static quantization (QDQ), calibrated on the calibration samples."""

    summary = "onnxruntime static int8 quantization (QDQ), calibrated on --calib samples"
    needs_calibration = True
    options = {
        "per_channel": "true: weights per output channel; false (default): per tensor",
        "calibrate": "activation calibration: minmax (default), entropy or percentile",
        "percentile": "percentile kept by calibrate=percentile (default 99.999)",
        "symmetric": "true: symmetric activations (keeps Relu nodes); false (default): asymmetric",
        "activation_type": "int8 (default) or uint8",
        "weight_type": "int8 (default) or uint8",
        "reduce_range": "true: 7-bit weights (CPUs without VNNI)",
        "exclude": "comma-separated node names kept in float (nodes_to_exclude)",
        "op_types": "comma-separated op types to quantize (default: all onnxruntime supports)",
    }

    def prepare(self, model: Any, calibration: Sequence[Feeds] = (), **options: Any) -> Int8Target:
        """Calibrate and quantize once; the result runs many inputs (see :class:`PreparedTarget`)."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise NetdiffError(f"option(s) {', '.join(sorted(unknown))} do not apply to target 'int8'")
        return Int8Quantizer(model, calibration, Int8Config.from_options(options)).prepare()

    def _simulate(self, model: Any, feeds: Feeds, calibration: Sequence[Feeds], **options: Any) -> Dump:
        from netdiff.runners.onnxrt import OnnxModel

        target = self.prepare(model, calibration or [feeds], **options)
        reference = OnnxModel.from_proto(target.float_model, "<float reference>").run(dict(feeds))
        return target.dump(feeds, reference)
