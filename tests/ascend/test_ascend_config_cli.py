"""``netdiff ascend-config``: acl.json for device dumps."""

from __future__ import annotations

import json

from netdiff.cli import main


def _om_json(tmp_path, name="resnet50"):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"name": name, "attr": [], "graph": [{"name": "g", "op": []}]}))
    return path


def test_writes_acl_json(tmp_path, capsys):
    out = tmp_path / "acl.json"
    code = main(["ascend-config", str(_om_json(tmp_path)), "--out", str(out), "--dump-path", "/home/u/dump",
                 "--mode", "all"])
    assert code == 0
    assert json.loads(out.read_text()) == {"dump": {"dump_list": [{"model_name": "resnet50"}],
                                                    "dump_path": "/home/u/dump", "dump_mode": "all",
                                                    "dump_op_switch": "off"}}
    assert "resnet50" in capsys.readouterr().out


def test_default_mode_is_output_and_refuses_overwrite(tmp_path, capsys):
    om, out = _om_json(tmp_path), tmp_path / "acl.json"
    assert main(["ascend-config", str(om), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dump"]["dump_mode"] == "output"
    out.write_text("keep me")
    assert main(["ascend-config", str(om), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["ascend-config", str(om), "--out", str(out), "--force", "--mode", "input"]) == 0
    assert json.loads(out.read_text())["dump"]["dump_mode"] == "input"


def test_bad_inputs(tmp_path, capsys):
    out = tmp_path / "acl.json"
    assert main(["ascend-config", str(_om_json(tmp_path)), "--out", str(out), "--mode", "everything"]) == 2
    assert "dump mode" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main(["ascend-config", str(bad), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not out.exists()
