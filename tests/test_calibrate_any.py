"""`training.calibrate` on a prompt set: any Janus-format folder gets a pruning threshold from its own images (tiny
random Janus-Pro-format folder, 4 prompts x 2 images: mechanics, not quality)."""
import json

import numpy as np
import pytest
import torch

from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.janus_roles import JanusRoles
from gridar_desktop.engine.search import pruning_threshold
from gridar_desktop.training import calibrate as cal
from test_janus_roles import save_pro_folder

PROMPTS = ["a red fox in the snow", "a blue bird on a branch", "a photo of a cat", "two dogs on the beach"]


@pytest.fixture
def folder(tmp_path):
    torch.set_num_threads(1)
    save_pro_folder(tmp_path / "model", seed=5)
    (tmp_path / "model" / "gridar.json").write_text(json.dumps({"name": "tiny pro", "defaults": {"guidance": 3.0}}))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p, "category": "x"}) + "\n"
                                                    for p in PROMPTS))
    return tmp_path


def test_threshold_from_the_models_own_images(folder, monkeypatch, capsys):
    """Views are labelled by how their image ends (here the scorer accepts every other image), the threshold is
    the rule over the accepted ones' P(possible), pooled over both verification rows; written into gridar.json
    with every other field kept, and the roles loaded from the folder prune at it."""
    seen = {"p": [], "rows": []}
    real_verify = JanusRoles.verify

    def verify(self, prompt, views, cost):
        p = real_verify(self, prompt, views, cost)
        seen["p"] += p
        seen["rows"] += [v.rows for v in views]
        return p

    def score_answers(self, prompt, images, cost):
        return [(0.6, 0.4) if i % 2 == 0 else (0.3, 0.5) for i in range(len(images))]
    monkeypatch.setattr(JanusRoles, "verify", verify)
    monkeypatch.setattr(JanusRoles, "score_answers", score_answers)
    assert cal.main([str(folder / "model"), "--prompts", str(folder / "prompts.jsonl"), "--samples", "2",
                     "--write", "--threads", "1"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["rows"] == [2, 4] and rec["accepted_by"] == "scorer" and rec["guidance"] == 3.0   # model's own
    p, rows = np.array(seen["p"]), np.array(seen["rows"])
    assert len(p) == 2 * len(PROMPTS) * 2                     # 8 images, each cut after 2 and after 4 rows
    ok = np.tile(np.arange(8) % 2 == 0, 2)                    # the same images at each cut, in order
    assert rec["value"] == round(cal.threshold_for(p[ok]), 4)
    assert rec["held_out"]["2"] == {"accepted": 4, "not_accepted": 4,
                                    "false_reject": round(float((p[ok & (rows == 2)] < rec["value"]).mean()), 3),
                                    "reject_not_accepted": round(float((p[~ok & (rows == 2)] < rec["value"]).mean()),
                                                                 3)}
    meta = json.loads((folder / "model" / "gridar.json").read_text())
    assert meta["name"] == "tiny pro" and meta["defaults"] == {"guidance": 3.0}
    assert meta["verify_threshold"] == rec and rec["weights"].startswith("sha256:")
    roles = JanusRoles(JanusBackend.load(folder / "model", device="cpu", dtype="float32"))
    assert roles.calibrated and pruning_threshold(roles, rows=2) == rec["value"] == pruning_threshold(roles)


def test_shapes_prompts_are_labelled_by_the_shapes_judge(tmp_path):
    """A shapes-world model given shapes prompts: the judge reads the finished images (a random model draws none
    that it accepts, which is said in one line rather than calibrated on nothing)."""
    from gridar_desktop.engine.tiny import save_tiny_janus
    torch.set_num_threads(1)
    save_tiny_janus(tmp_path / "m", seed=2)
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a red circle above a blue square"}) + "\n")
    with pytest.raises(ValueError, match="accepted by the shapes judge"):
        cal.calibrate_prompts(tmp_path / "m", tmp_path / "p.jsonl", samples=2)


def test_bad_input_is_one_line(folder, capsys):
    model, prompts = str(folder / "model"), str(folder / "prompts.jsonl")
    for argv, says in [([model, "--prompts", str(folder / "missing.jsonl")], "no such file"),
                       ([str(folder), "--prompts", prompts], "config.json"),
                       ([model, "--prompts", prompts, "--samples", "0"], "--samples"),
                       ([model], "not a shapes-world model")]:
        assert cal.main(argv + ["--threads", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("calibrate: ") and says in err and "\n" not in err and "Traceback" not in err


def test_gridar_calibrate_is_the_same_command(folder, monkeypatch, capsys):
    """`gridar calibrate` runs the same calibration (its options checked by the CLI's parser first) and speaks as
    `gridar calibrate`; the calibration note the verifier gives names that command."""
    from gridar_desktop.cli import main
    monkeypatch.setattr(JanusRoles, "score_answers",
                        lambda self, prompt, images, cost: [(0.6, 0.4)] * len(images))
    assert main(["calibrate", str(folder / "model"), "--prompts", str(folder / "prompts.jsonl"), "--samples", "1",
                 "--device", "cpu", "--dtype", "float32"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["accepted_by"] == "scorer" and "verify_threshold" not in json.loads(
        (folder / "model" / "gridar.json").read_text())                   # no --write: gridar.json untouched
    assert main(["calibrate", str(folder / "model"), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
    assert main(["calibrate", str(folder / "model"), "--prompts", str(folder / "nope.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridar calibrate: ") and "no such file" in err and "\n" not in err
    roles = JanusRoles(JanusBackend.load(folder / "model", device="cpu", dtype="float32"))
    assert not roles.calibrated and "gridar calibrate " in roles.calibration_note
