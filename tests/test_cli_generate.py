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
    assert summary["precision"] == "float32"             # a tiny model on a CPU: auto keeps float32
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
                   "--seeds", "0,1", "--model", str(folder), "--device", "cpu", "--batch", "2", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r["methods"]) == {"best-of-n:4", "gridar-replace:4"}
    m = r["methods"]["gridar-replace:4"]
    assert 0 <= m["strict"] <= 1 and 0 <= m["partial"] <= 1 and len(m["strict_per_seed"]) == 2
    assert set(m["per_category"]) == {"single", "counting", "pair", "relation", "triple"}
    assert m["cost"]["image_tokens"] == 5 * 2 * 4 * 64
    # 5 prompts in batches of 2 -> 3 batched searches per seed, each verifying twice
    assert m["cost"]["roles"]["verifier"]["calls"] == 3 * 2 * 2


@pytest.fixture()
def edit_files(tmp_path):
    import numpy as np
    from PIL import Image

    from gridar_desktop.shapes.scene import make_scene
    img, _ = make_scene("a red circle and a blue square", 1, 64)
    img.resize((128, 128)).save(tmp_path / "src.jpg")
    m = np.zeros((100, 100), np.uint8)
    m[30:60, 30:60] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    Image.new("L", (64, 64), 0).save(tmp_path / "empty.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    return tmp_path


def test_edit_writes_png_with_source_and_mask(folder, edit_files, capsys):
    out = edit_files / "out.png"
    rc = cli_main(["edit", str(edit_files / "src.jpg"), str(edit_files / "mask.png"), "make the circle green",
                   "--target-prompt", "a green circle and a blue square", "--model", str(folder), "-n", "4",
                   "--device", "cpu", "--verify-by", "view", "--refill", "copy", "-o", str(out), "--json"])
    assert rc == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert "resampled the mask" in cap.err and "resized the 128x128 image" in cap.err
    meta = read_metadata(out)
    edit = meta["settings"]["edit"]
    assert edit["instruction"] == "make the circle green" and edit["source_png"] and edit["mask_png"]
    assert summary["cost"]["image_tokens"] == 4 * summary["redrawn_tokens"] < 4 * 64


def test_edit_errors(folder, edit_files, capsys):
    base = ["--model", str(folder), "-o", str(edit_files / "x.png")]
    assert cli_main(["edit", str(edit_files / "src.jpg"), str(edit_files / "empty.png"), "a red circle"] + base) == 2
    assert "mask is empty" in capsys.readouterr().err
    assert cli_main(["edit", str(edit_files / "broken.png"), str(edit_files / "mask.png"), "a red circle"] + base) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert cli_main(["edit", str(edit_files / "src.jpg"), str(edit_files / "mask.png"), "make it green"] + base) == 2
    assert "--target-prompt" in capsys.readouterr().err


def test_generate_threshold_option_is_used_and_recorded(folder, tmp_path, capsys):
    """--threshold 1 rejects every candidate (P is below 1) (each group then keeps all); the PNG records the value; without it
    the tiny model (no calibrated threshold) prunes at the default."""
    from gridar_desktop.engine.search import DEFAULT_THRESHOLD
    out = tmp_path / "t.png"
    assert cli_main(["generate", "two red circles", "--model", str(folder), "--method", "gridar", "-n", "4",
                     "--device", "cpu", "--threshold", "1.0", "-o", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["settings"]["threshold"] == 1.0
    assert all(node["all_rejected_groups"] == [0] for node in meta["tree"])
    assert cli_main(["generate", "two red circles", "--model", str(folder), "--method", "gridar", "-n", "4",
                     "--device", "cpu", "-o", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["settings"]["threshold"] is None                        # the verifier's own, per band ...
    assert [node["threshold"] for node in meta["tree"]] == [DEFAULT_THRESHOLD] * 2    # ... the default here


def test_edit_verdicts_from_a_completion_without_reformulation(folder, edit_files, capsys):
    out = edit_files / "r.png"
    assert cli_main(["edit", str(edit_files / "src.jpg"), str(edit_files / "mask.png"), "make the circle green",
                     "--target-prompt", "a green circle and a blue square", "--model", str(folder), "-n", "4",
                     "--device", "cpu", "--verify-by", "rollout", "--refill", "copy", "--no-reformulate", "-o", str(out),
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the completions are drawn tokens too: counted, on top of the 4 candidates' own (copy refills draw nothing more)
    assert 4 * summary["redrawn_tokens"] < summary["cost"]["image_tokens"] < 3 * 4 * summary["redrawn_tokens"]
    meta = read_metadata(out)
    assert meta["settings"]["verify_by"] == "rollout" and meta["settings"]["reformulate"] is False
    assert meta["tree"] and all(node["verify_by"] == "rollout" and "layouts" not in node for node in meta["tree"])
    assert all(node["threshold"] == 0.5 for node in meta["tree"])


def test_edit_defaults_to_rollout_verdicts_and_refill_by_redraw(folder, edit_files):
    out = edit_files / "d.png"
    # no --verify-by or --refill: the edit defaults. A threshold above every P rejects every candidate: with redraw,
    # each slot draws its band again
    assert cli_main(["edit", str(edit_files / "src.jpg"), str(edit_files / "mask.png"), "make the circle green",
                     "--target-prompt", "a green circle and a blue square", "--model", str(folder), "-n", "4",
                     "--device", "cpu", "--threshold", "1.0", "-o", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["settings"]["refill"] == "redraw" and meta["settings"]["verify_by"] == "rollout"
    assert meta["tree"] and all(node["redraw"] == [True] * 4 and node["all_rejected_groups"] == []
                                for node in meta["tree"])


def test_generate_with_a_separate_qwen_vl_judge(tmp_path, capsys):
    """--judge FOLDER: the verifier, scorer and reformulator are the folder's model (a tiny Qwen2.5-VL with its real
    processor configuration), the generator the demo model; the judge is recorded and its calibration said once."""
    from test_vlm_roles import tiny_qwen_vl_folder
    judge = tiny_qwen_vl_folder(tmp_path / "qwen")
    capsys.readouterr()
    out = tmp_path / "judged.png"
    rc = cli_main(["generate", "a red circle above a blue square", "--method", "gridar", "-n", "4", "--seed", "1",
                   "--judge", str(judge), "--device", "cpu", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    roles = summary["cost"]["roles"]
    assert summary["judge"] == str(judge) and read_metadata(out)["settings"]["judge"] == str(judge)
    # the judge's own parameters (about 0.1 M), not the demo model's understanding path, answer every question
    assert roles["verifier"]["params"] == roles["scorer"]["params"] == roles["reformulator"]["params"] < 200_000
    assert roles["verifier"]["calls"] == 2 and roles["scorer"]["calls"] == 1
    notes = [line for line in captured.err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "is not calibrated" in notes[0]


def test_a_bad_judge_is_refused_in_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from gridar_desktop.engine.backend import JanusBackend
    monkeypatch.setattr(JanusBackend, "load", classmethod(lambda cls, *a, **k: pytest.fail("the model loaded")))
    (tmp_path / "weightless").mkdir()
    (tmp_path / "weightless" / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    for judge, words in [(tmp_path / "none", "does not exist"), (tmp_path / "weightless", "no .safetensors")]:
        rc = cli_main(["generate", "two red circles", "--method", "gridar", "--judge", str(judge),
                       "-o", str(tmp_path / "x.png")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and "argument --judge" in err and words in err
    rc = cli_main(["bench", "--prompts", "p.jsonl", "--judge", str(tmp_path / "weightless"), "--cluster", "auto",
                   "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and ("--cluster" in err)


def test_edit_with_a_separate_judge(edit_files, capsys):
    from test_vlm_roles import tiny_qwen_vl_folder
    judge = tiny_qwen_vl_folder(edit_files / "qwen")
    capsys.readouterr()
    out = edit_files / "judged-edit.png"
    rc = cli_main(["edit", str(edit_files / "src.jpg"), str(edit_files / "mask.png"), "make the circle green",
                   "--target-prompt", "a green circle and a blue square", "-n", "4", "--judge", str(judge),
                   "--device", "cpu", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    roles = json.loads(captured.out)["cost"]["roles"]
    assert roles["scorer"]["params"] < 200_000 and roles["scorer"]["calls"] >= 1
    assert read_metadata(out)["settings"]["judge"] == str(judge)
