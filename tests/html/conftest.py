"""Fixtures for the HTML report tests: the demo report, a synthetic 200-layer report, headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from netdiff.detail import layer_detail
from netdiff.metrics import compute_metrics
from netdiff.types import Finding, IDENTITY, LayerResult, Match, Report, Thresholds

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio"]


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The bundled demo (conv3 badly int8-quantized), compared for real."""
    from netdiff.demo import build_demo
    from netdiff.pipeline import compare

    case = build_demo(tmp_path_factory.mktemp("demo"))
    return compare(case.model, case.target, {"input": str(case.input)})


def synthetic_report(n: int = 200, seed: int = 0, names: dict[int, str] | None = None) -> Report:
    """A report of ``n`` layers with residual edges, realistic metrics and detail data.

    Channels vary from 16 to 512 and spatial sizes from 7x7 to 56x56; layer ``n // 3`` is a
    planted origin (error grows after it). ``names`` overrides some layer names.
    """
    rng = np.random.default_rng(seed)
    ops = ["Conv", "BatchNormalization", "Relu", "Add", "MaxPool"]
    layers: list[LayerResult] = []
    planted = n // 3
    noise = 1e-3
    for i in range(n):
        name = (names or {}).get(i, f"/backbone/stage{i // 20}/block{i % 20}/{ops[i % 5].lower()}/{ops[i % 5]}_output_0")
        channels = int([16, 32, 64, 128, 256, 512][min(5, i * 6 // n)])
        side = int([56, 28, 14, 7][min(3, i * 4 // n)])
        ref = rng.standard_normal((1, channels, side, side)).astype(np.float32)
        if i == planted:
            noise = 0.2
        elif i > planted:
            noise *= 1.01
        tgt = ref + rng.standard_normal(ref.shape).astype(np.float32) * noise * (1 + (np.arange(channels) % 7 == 3))[None, :, None, None]
        metrics = compute_metrics(ref, tgt)
        status = "ok" if Thresholds().passes(metrics) else "diverged"
        inputs = tuple(layers[j].name for j in ([i - 1] if i else []) + ([i - 3] if i >= 3 and ops[i % 5] == "Add" else []))
        layers.append(LayerResult(name=name, target_name=name.replace("/", "_"), op_type=ops[i % 5], order=i, status=status,
                                  metrics=metrics, match=Match(name, name.replace("/", "_"), "normalized", IDENTITY, "names equal after normalizing"),
                                  introduced=i == planted, error_gain=3.5 if i == planted else 1.0,
                                  shape=ref.shape, target_shape=ref.shape, inputs=inputs,
                                  extra={"detail": layer_detail(ref, tgt), "node": name.rsplit("_output", 1)[0]}))
    origins = [layers[planted].name]
    return Report(reference={"path": "synthetic.onnx", "format": "onnx", "kind": "model"},
                  target={"path": "synthetic_dump", "format": "npy-dir", "kind": "dump"},
                  thresholds=Thresholds(), layers=layers, first_divergence=origins[0], origins=origins,
                  findings=[Finding("fp16_overflow", origins[0], "warning", "Values exceed the fp16 range at this layer.",
                                    {"max_abs": 70000.0}, "Keep this layer in fp32.")],
                  inputs={"input": "random(seed=0)"})


@pytest.fixture(scope="session")
def big_report() -> Report:
    """The synthetic 200-layer report."""
    return synthetic_report(200)


@pytest.fixture(scope="session")
def make_report():
    """The synthetic report factory (``make_report(n, seed, names)``)."""
    return synthetic_report


@dataclass
class Browser:
    """Headless Chromium driven from the command line (fresh profile per call)."""

    executable: str
    workdir: Path

    def _run(self, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        profile = self.workdir / f"profile-{len(list(self.workdir.iterdir()))}"
        profile.mkdir()
        cmd = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)

    def dump_dom(self, page: Path, fragment: str = "", size: str = "1400,1000") -> str:
        """The page's DOM after its load-time scripts ran, in a window of ``size`` pixels."""
        result = self._run(page.resolve().as_uri() + fragment, "--dump-dom", f"--window-size={size}")
        if result.returncode != 0 or "<html" not in result.stdout:
            pytest.fail(f"chromium --dump-dom failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def selftest(self, page: Path, fragment: str = "", size: str = "1400,1000") -> tuple[dict, str]:
        """Run the page's embedded self-test (``#selftest``); return its result and the DOM."""
        dom = self.dump_dom(page, "#selftest" + fragment, size)
        start = dom.find('id="selftest-result"')
        assert start >= 0, "no self-test output element in the DOM"
        body = dom[dom.index(">", start) + 1: dom.index("</pre>", start)]
        assert body, "the self-test did not run (script failed before it?)"
        import html

        return json.loads(html.unescape(body)), dom

    def screenshot(self, page: Path, out: Path, size: str = "1400,2300") -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = self._run(page.resolve().as_uri(), f"--screenshot={out}", f"--window-size={size}")
        if not out.is_file():
            pytest.fail(f"chromium --screenshot wrote nothing ({result.returncode}): {result.stderr[-2000:]}")
        return out


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless Chromium not found (Debian: apt-get install chromium); browser tests skipped")
    workdir = tmp_path / "chromium"
    workdir.mkdir()
    return Browser(exe, workdir)


@pytest.fixture
def artifacts() -> Path:
    """The git-ignored artifacts/html folder at the repository root."""
    path = ROOT / "artifacts" / "html"
    path.mkdir(parents=True, exist_ok=True)
    return path
