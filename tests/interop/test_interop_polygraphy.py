"""Polygraphy RunResults JSON: reading real Polygraphy output, legacy encodings, corrupt files, writing."""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import pytest

from netdiff.errors import DumpFormatError, OutputError
from netdiff.readers import detect_format, get_reader, read_dump
from netdiff.types import Dump, Tensor
from netdiff.writers.polygraphy_json import write_polygraphy_json


def _polygraphy():
    pytest.importorskip("polygraphy")
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR
    return RunResults, IterationResult


def _arrays(rng, scale=1.0):
    return {
        "/conv1/Conv_output_0": (rng.standard_normal((1, 4, 5, 5)) * scale).astype(np.float32),
        "relu.out:0": rng.standard_normal((2, 3)).astype(np.float16),
        "indices": np.arange(7, dtype=np.int64),
        "mask": np.array([[True, False], [False, True]]),
        "scalar": np.array(3.5, dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
    }


@pytest.fixture
def real_file(tmp_path, rng):
    RunResults, IterationResult = _polygraphy()
    runs = RunResults()
    iters_a = [_arrays(np.random.default_rng(i)) for i in range(2)]
    iters_b = [_arrays(np.random.default_rng(10 + i), 2.0) for i in range(2)]
    runs.append(("onnxrt-runner-N0", [IterationResult(outputs=o, runner_name="onnxrt-runner-N0") for o in iters_a]))
    runs.append(("trt-runner-N0", [IterationResult(outputs=o, runtime=0.25, runner_name="trt-runner-N0") for o in iters_b]))
    path = tmp_path / "outputs.json"
    runs.save(str(path))
    return path, iters_a, iters_b


def _assert_same(dump: Dump, arrays: dict[str, np.ndarray]) -> None:
    assert dump.names == list(arrays)
    for name, expected in arrays.items():
        got = dump[name].load()
        assert dump[name].shape == expected.shape and dump[name].dtype == expected.dtype.name
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name


def test_reads_real_polygraphy_file_first_runner_and_iteration(real_file):
    path, iters_a, _ = real_file
    assert detect_format(path) == "polygraphy"
    dump = read_dump(path)
    assert dump.format == "polygraphy"
    assert dump.meta["polygraphy_runner"] == "onnxrt-runner-N0"
    assert dump.meta["polygraphy_runners"] == ["onnxrt-runner-N0", "trt-runner-N0"]
    _assert_same(dump, iters_a[0])
    assert [t.order for t in dump] == list(range(len(iters_a[0])))


@pytest.mark.parametrize("runner", ["trt-runner-N0", "1", 1, -1])
def test_runner_and_iteration_options(real_file, runner):
    path, _, iters_b = real_file
    dump = read_dump(path, "polygraphy", runner=runner, iteration="1")
    assert dump.meta["polygraphy_runner"] == "trt-runner-N0" and dump.meta["runtime_s"] == 0.25
    _assert_same(dump, iters_b[1])
    _assert_same(read_dump(path, "polygraphy", runner=runner, iteration=-1), iters_b[1])


@pytest.mark.parametrize("options, message", [
    ({"runner": "tensorrt"}, "no runner 'tensorrt'; runners: onnxrt-runner-N0, trt-runner-N0"),
    ({"runner": 5}, "runner index 5 out of range"),
    ({"iteration": 2}, "has no iteration 2 (it has 2)"),
    ({"iteration": "first"}, "option iteration='first' is not an integer"),
])
def test_bad_options_name_what_exists(real_file, options, message):
    with pytest.raises(DumpFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_dump(real_file[0], "polygraphy", **options)


def test_per_iteration_directory_written_by_polygraphy(tmp_path):
    RunResults, IterationResult = _polygraphy()
    from polygraphy.json.serde import IterationWriter

    out = tmp_path / "outputs"
    expected = []
    with IterationWriter(str(out), combine=RunResults.concat) as writer:
        for i in range(3):
            arrays = _arrays(np.random.default_rng(100 + i))
            expected.append(arrays)
            single = RunResults()
            single.append(("ort", [IterationResult(outputs=arrays, runner_name="ort")]))
            writer.append(single)
    assert sorted(p.name for p in out.iterdir())[0] == "0000000000.json"
    assert detect_format(out) == "polygraphy"
    _assert_same(read_dump(out), expected[0])
    _assert_same(read_dump(out, iteration=2), expected[2])
    _assert_same(read_dump(out, iteration=-2), expected[1])


def test_tensors_decode_lazily_one_at_a_time(tmp_path, writers, rng):
    good = rng.standard_normal((4, 4)).astype(np.float32)
    raw = bytearray(writers.npy_bytes(np.ones((64,), np.float32)))
    text = base64.b64encode(bytes(raw)).decode()
    bad = {"values": {"array": text[:300] + "!!!!" + text[304:], "polygraphy_class": "ndarray"},
           "polygraphy_class": "LazyArray"}
    path = writers.run_results(tmp_path / "r.json", {"dev": [{"good": good, "bad": bad}]})
    dump = read_dump(path)  # reading the structure does not decode the arrays
    assert np.array_equal(dump["good"].load(), good)
    with pytest.raises(DumpFormatError, match=r"output 'bad' of runner 'dev'.*(corrupt|neither)"):
        dump["bad"].load()


def test_legacy_encodings(tmp_path, writers, rng):
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(5)]
    npz = __import__("io").BytesIO()
    np.savez(npz, arr_0=arrays[3])
    outputs = {
        # Polygraphy < 0.31: latin-1 string of the .npy bytes, legacy type markers
        "latin1": {"__polygraphy_encoded_LazyNumpyArray": "polygraphy_serialized_json_type",
                   "values": {"array": writers.npy_bytes(arrays[0]).decode("latin-1"),
                              "__polygraphy_encoded_ndarray": "polygraphy_serialized_json_type"}},
        "bare": {"array": base64.b64encode(writers.npy_bytes(arrays[1])).decode(), "polygraphy_class": "ndarray"},
        "alias": {"values": {"array": base64.b64encode(writers.npy_bytes(arrays[2])).decode(),
                             "polygraphy_class": "ndarray"}, "polygraphy_class": "LazyNumpyArray"},
        "npz": {"values": {"array": base64.b64encode(npz.getvalue()).decode(), "polygraphy_class": "ndarray"},
                "polygraphy_class": "LazyArray"},
        "modern": arrays[4],
    }
    path = writers.run_results(tmp_path / "legacy.json", {"old": [outputs]})
    dump = read_dump(path)
    for name, expected in zip(outputs, arrays[:3] + [arrays[3], arrays[4]]):
        assert np.array_equal(dump[name].load(), expected), name
        assert dump[name].shape == (2, 3)


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) // 2], r"truncated Polygraphy JSON at byte \d+"),
    (lambda text: text.replace('"lst"', '"lst" 3'), r"invalid Polygraphy JSON at byte \d+"),
    (lambda text: "", "truncated Polygraphy JSON at byte 0 \\(the file is empty\\)"),
])
def test_corrupt_files_give_one_line(real_file, damage, message):
    path = real_file[0]
    path.write_text(damage(path.read_text()))
    with pytest.raises(DumpFormatError, match=message) as info:
        read_dump(path, "polygraphy")
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_array_payload_is_caught_at_read(tmp_path, writers):
    array = np.arange(1000, dtype=np.float32)
    text = base64.b64encode(writers.npy_bytes(array)).decode()
    cut = {"values": {"array": text[:400], "polygraphy_class": "ndarray"}, "polygraphy_class": "LazyArray"}
    path = writers.run_results(tmp_path / "cut.json", {"dev": [{"x": cut}]})
    with pytest.raises(DumpFormatError, match=r"output 'x'.*truncated array \(\d+ data bytes, header \(1000,\) float32"):
        read_dump(path)


@pytest.mark.parametrize("value, message", [
    ({"values": {"tensor": "gASV", "polygraphy_class": "Tensor"}, "polygraphy_class": "LazyArray"}, "torch.Tensor"),
    ({"values": [1, 2, 3], "polygraphy_class": "LazyArray"}, "not an encoded array"),
])
def test_unsupported_payloads(tmp_path, writers, value, message):
    path = writers.run_results(tmp_path / "t.json", {"dev": [{"x": value}]})
    with pytest.raises(DumpFormatError, match=message):
        read_dump(path)


def test_pickled_object_arrays_are_refused(tmp_path, writers):
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    value = {"values": {"array": base64.b64encode(buffer.getvalue()).decode(), "polygraphy_class": "ndarray"},
             "polygraphy_class": "LazyArray"}
    path = writers.run_results(tmp_path / "p.json", {"dev": [{"x": value}]})
    with pytest.raises(DumpFormatError, match="Python objects"):
        read_dump(path)


def test_other_json_is_not_detected(tmp_path):
    reader = get_reader("polygraphy")
    inputs = tmp_path / "inputs.json"  # polygraphy --save-inputs: a list of feed dicts
    inputs.write_text(json.dumps([{"x": {"array": "AAAA", "polygraphy_class": "ndarray"}}]))
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"lst": [1, 2], "name": "not polygraphy"}))
    assert not reader.sniff(inputs) and not reader.sniff(other)
    with pytest.raises(DumpFormatError, match="not a Polygraphy RunResults document"):
        reader.read(inputs)


def test_written_file_loads_in_polygraphy_and_round_trips_exactly(tmp_path, rng):
    RunResults, _ = _polygraphy()
    arrays = _arrays(rng)
    dump = Dump(tensors={n: Tensor.from_array(n, a) for n, a in arrays.items()}, source="mem")
    path = write_polygraphy_json(dump, tmp_path / "netdiff.json", runner_name="npu-board")
    loaded = RunResults.load(str(path))
    assert list(loaded.keys()) == ["npu-board"] and len(loaded["npu-board"]) == 1
    iteration = loaded["npu-board"][0]
    assert list(iteration.keys()) == list(arrays)
    for name, expected in arrays.items():
        got = iteration[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=expected.dtype.kind == "f"), name
    _assert_same(read_dump(path), arrays)
    with pytest.raises(OutputError, match="exists"):
        write_polygraphy_json(dump, path)
    write_polygraphy_json(dump, path, force=True)


def test_written_file_compares_in_polygraphy(tmp_path, rng):
    RunResults, _ = _polygraphy()
    from polygraphy.comparator import Comparator, CompareFunc

    arrays = {"y": rng.standard_normal((8,)).astype(np.float32)}
    a = write_polygraphy_json(Dump({"y": Tensor.from_array("y", arrays["y"])}), tmp_path / "a.json", runner_name="a")
    b = write_polygraphy_json(Dump({"y": Tensor.from_array("y", arrays["y"] + 1)}), tmp_path / "b.json", runner_name="b")
    runs = RunResults()
    for p in (a, b):
        for item in RunResults.load(str(p)).items():
            runs.append(item)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Comparator.compare_accuracy(runs, compare_func=CompareFunc.simple(atol=1e-3))
    assert not bool(result)
