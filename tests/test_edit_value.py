"""The edit value head: its fit, the threshold rule, its training from rollouts, and how the roles and the search
use it (`training.edit_value`)."""
import hashlib
import json

import numpy as np
import pytest
import torch

from gridar_desktop.training import edit_value as ev


def test_auroc_is_the_pairwise_ranking_probability_with_ties_half():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.4
    s = rng.integers(0, 5, 60).astype(float)              # many ties
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
    assert ev.auroc(y, s) == pytest.approx(pairwise)
    assert ev.auroc(np.ones(3, bool), np.arange(3.0)) is None


def test_logistic_fit_finds_the_direction_and_folds_the_standardisation_in():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 12)) * np.arange(1, 13) + 5.0          # unequal scales, offset
    direction = np.zeros(12)
    direction[3] = 1.0
    y = (x @ direction - 5.0 + rng.normal(scale=1.0, size=800)) > 0
    w, b = ev.fit_logistic(x[:600], y[:600], 0.01)
    z = ev.logits(x[600:], w, b)
    assert ev.auroc(y[600:], z) > 0.9
    assert np.argmax(np.abs(w * x.std(0))) == 3                       # the informative feature dominates
    # raw-feature weights: the same logits as fitting on features standardised beforehand
    mu, sd = x[:600].mean(0), x[:600].std(0) + 1e-6
    ws, bs = ev.fit_logistic((x[:600] - mu) / sd, y[:600], 0.01)
    assert np.allclose(ev.logits((x[600:] - mu) / sd, ws, bs), z, atol=1e-3)


def _data(ok, score, p, bands=1):
    """One view per candidate and band, edits of 4 candidates in order."""
    ok, score, p = (np.asarray(v) for v in (ok, score, p))
    n = len(ok)
    return ({"edit": np.tile(np.arange(n) // 4, bands), "band": np.repeat(np.arange(bands), n),
             "ok": np.tile(ok.astype(bool), bands), "score": np.tile(score, bands)}, np.asarray(p, float))


def test_pruning_changes_the_pick_only_by_dropping_candidates_below_the_threshold():
    # the scorer prefers slot 0, which fails; the value head says so
    data, p = _data([0, 1, 1, 0], [0.9, 0.5, 0.4, 0.1], [0.1, 0.8, 0.7, 0.6])
    assert ev.simulated_success(data, p, 0.0) == 0.0
    assert ev.simulated_success(data, p, 0.5) == 1.0
    assert ev.simulated_success(data, p, 0.95) == 0.0                 # all rejected: all kept, the scorer's pick
    t, sim = ev.choose_threshold(data, p)
    assert sim["at_threshold"] == 1.0 and sim["no_pruning"] == 0.0 and 0.1 < t <= 0.6


def test_a_rejection_at_any_band_drops_the_candidate():
    data, _ = _data([0, 1, 1, 0], [0.9, 0.5, 0.4, 0.1], [0] * 4, bands=2)
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.8, 0.7, 0.6])               # slot 0 looks fine at band 0, not at 1
    assert ev.simulated_success(data, p, 0.5) == 1.0


def test_no_threshold_when_pruning_never_helps():
    data, p = _data([1, 0, 0, 0, 1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1, 0.8, 0.7, 0.2, 0.1],
                    [0.2, 0.9, 0.8, 0.7, 0.1, 0.9, 0.9, 0.9])              # the head is wrong
    t, sim = ev.choose_threshold(data, p)
    assert t == 0.0 and sim["at_threshold"] == sim["no_pruning"] == 1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny folder that knows the edit question, a value head learned from 12 of its edits (the judge replaced by
    a stand-in that splits the tiny model's images into both outcomes)."""
    import gridar_desktop.shapes.judge as judge_mod
    from gridar_desktop.engine.tiny import save_tiny_janus
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    save_tiny_janus(folder, seed=2)
    meta = json.loads((folder / "gridar.json").read_text())
    (folder / "gridar.json").write_text(json.dumps(dict(meta, edit_verify=True, verify_threshold_edit={"value": 0.3})))

    class Verdict:
        def __init__(self, strict):
            self.strict = strict
    real = judge_mod.judge
    judge_mod.judge = lambda im, prompt: Verdict(hashlib.blake2b(im.tobytes()).digest()[0] % 2 == 0)
    try:
        work = tmp_path_factory.mktemp("work")
        record = ev.train_edit_value(folder, work, edits=12, threads=1)
        again = ev.train_edit_value(folder, work, edits=12, threads=1)      # read back from the saved batches
    finally:
        judge_mod.judge = real
    return folder, work, record, again


def test_the_head_is_saved_beside_the_weights_and_recorded(trained):
    folder, work, record, again = trained
    assert (folder / ev.HEAD_FILE).is_file()
    assert sorted(p.name for p in (work / "editvalue").iterdir()) and all(
        p.suffix == ".npz" for p in (work / "editvalue").iterdir())
    meta = json.loads((folder / "gridar.json").read_text())
    assert meta["edit_value"] == again
    assert record["views"] == again["views"] > 0 and record["threshold"] == again["threshold"]
    assert 0.0 <= record["threshold"] <= 1.0 and record["penalty"] in ev.PENALTIES
    w, b = ev.load_head(folder)
    assert w.shape == (json.loads((folder / "config.json").read_text())["text_config"]["hidden_size"],)


def test_roles_judge_partial_edits_by_the_head_and_generations_by_the_word(trained):
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.cost import CostRecord
    from gridar_desktop.engine.janus_roles import JanusRoles
    from gridar_desktop.engine.roles import PartialView
    from gridar_desktop.engine.search import pruning_threshold
    folder, _, record, _ = trained
    roles = JanusRoles(JanusBackend.load(folder, device="cpu", dtype="float32"))
    assert roles.edit_value is not None
    assert pruning_threshold(roles, edit=True) == record["threshold"]
    rng = np.random.default_rng(0)
    undrawn = np.zeros((64, 64), bool)
    undrawn[24:40, 16:40] = True
    views = [PartialView(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 3, 8, undrawn) for _ in range(3)]
    p = roles.verify("a red circle", views, CostRecord())
    h = roles.edit_hidden("a red circle", views, CostRecord())
    w, b = ev.load_head(folder)
    assert p == pytest.approx(torch.sigmoid(h.float() @ w + b).tolist(), abs=1e-6)
    assert p != pytest.approx(roles.answer_probability(h, "possible"), abs=1e-6)
    plain = [PartialView(v.image, 3, 8) for v in views]                  # generations: the word, as before
    c = CostRecord()
    q = roles.verify("a red circle", plain, c)
    assert all(0 <= x <= 1 for x in q) and c.roles["verifier"].prefill_token_rows < 3 * 64


def test_stages_that_change_the_weights_drop_the_head(tmp_path):
    from gridar_desktop.training.train_demo import drop_value_head
    (tmp_path / ev.HEAD_FILE).write_bytes(b"x")
    meta = {"edit_value": {"file": ev.HEAD_FILE}, "edit_verify": True}
    drop_value_head(tmp_path, meta)
    assert meta == {"edit_verify": True} and not (tmp_path / ev.HEAD_FILE).exists()


def test_a_head_for_other_weights_is_ignored(tmp_path):
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.janus_roles import JanusRoles
    from gridar_desktop.engine.tiny import save_tiny_janus
    save_tiny_janus(tmp_path, seed=2)
    ev.save_head(tmp_path, np.zeros(7, np.float32), 0.0)                 # not the hidden size
    meta = json.loads((tmp_path / "gridar.json").read_text())
    (tmp_path / "gridar.json").write_text(json.dumps(dict(meta, edit_verify=True,
                                                          edit_value={"file": ev.HEAD_FILE, "threshold": 0.4})))
    roles = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert roles.edit_value is None
