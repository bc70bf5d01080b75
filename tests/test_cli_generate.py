"""`gridar generate` and `gridar bench` end to end on a tiny model folder (random weights: mechanics only)."""
import json

import pytest

from gridar_desktop.cli import main as cli_main
from gridar_desktop.engine.tiny import save_tiny_janus
from gridar_desktop.io.png import read_metadata
from gridar_desktop.shapes.promptsets import make_prompt_set, write_jsonl


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-model")
    save_tiny_janus(d, seed=5)
    return d


@pytest.mark.parametrize("method", ["single", "best-of-n", "gridar"])
def test_generate_writes_png_with_metadata(folder, tmp_path, capsys, method):
    out = tmp_path / f"{method}.png"
    rc = cli_main(["generate", "two red circles", "--model", str(folder), "--method", method, "-n", "4",
                   "--seed", "3", "--device", "cpu", "-o", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    meta = read_metadata(out)
    assert meta["prompt"] == "two red circles" and meta["settings"]["method"] == method
    assert summary["cost"]["image_tokens"] == (64 if method == "single" else 256)
    if method == "gridar":
        assert len(meta["tree"]) == 2 and all("p_possible" in node for node in meta["tree"])
        assert summary["cost"]["roles"]["verifier"]["calls"] == 2


def test_generate_errors(folder, tmp_path, capsys):
    assert cli_main(["generate", "two red dragons", "--model", str(folder), "-o", str(tmp_path / "x.png")]) == 2
    assert "'dragons'" in capsys.readouterr().err
    assert cli_main(["generate", "two red circles", "--model", str(folder), "--method", "gridar", "-n", "6",
                     "-o", str(tmp_path / "x.png")]) == 2
    assert "multiple of 4" in capsys.readouterr().err
    assert cli_main(["generate", "two red circles", "--model", str(tmp_path / "none"), "-o", "x.png"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bench_report(folder, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    write_jsonl(make_prompt_set(5, 0), prompts)
    out = tmp_path / "r.json"
    rc = cli_main(["bench", "--prompts", str(prompts), "--methods", "best-of-n:4,gridar-replace:4",
                   "--seeds", "0,1", "--model", str(folder), "--device", "cpu", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r["methods"]) == {"best-of-n:4", "gridar-replace:4"}
    m = r["methods"]["gridar-replace:4"]
    assert 0 <= m["strict"] <= 1 and 0 <= m["partial"] <= 1 and len(m["strict_per_seed"]) == 2
    assert set(m["per_category"]) == {"single", "counting", "pair", "relation", "triple"}
    assert m["cost"]["image_tokens"] == 5 * 2 * 4 * 64
    assert m["cost"]["roles"]["verifier"]["calls"] == 5 * 2 * 2
