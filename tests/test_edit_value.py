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
    assert record["final_weight"] in ev.WEIGHTS and set(record["simulated_success"]["by_final_weight"]) == {
        str(w) for w in ev.WEIGHTS}
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
    assert roles.final_value_weight_edit == record["final_weight"]
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


def test_the_final_weight_lets_the_verdicts_overrule_a_confident_scorer_only_when_it_pays():
    # edit 0: the scorer prefers slot 0 (fails), the verdicts slot 1 (ends right); edit 1: both agree on slot 2
    data, p = _data([0, 1, 0, 0, 0, 0, 1, 0], [0.8, 0.7, 0.1, 0.1, 0.2, 0.2, 0.9, 0.1],
                    [0.3, 0.9, 0.5, 0.5, 0.5, 0.5, 0.8, 0.5])
    assert ev.simulated_success(data, p, 0.0, 0.0) == 0.5
    assert ev.simulated_success(data, p, 0.0, 1.0) == 1.0
    w, table = ev.choose_weight(data, p, 0.0)
    assert w == 0.5 and table["0.0"] == 0.5                # the smallest weight that pays
    flat = np.full(8, 0.6)                                 # verdicts that tell nothing: the scorer alone
    assert ev.choose_weight(data, flat, 0.0)[0] == 0.0


def _value_roles(verdicts, scores, weight):
    from test_search import ScriptedRoles
    roles = ScriptedRoles(verdicts=verdicts, scores=scores)
    roles.final_value_weight_edit = weight
    return roles


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_gridar_edits_rank_by_score_and_the_verdicts_along_each_path(weight):
    from test_edit import box_mask, source_image, PROMPT
    from gridar_desktop.engine.edit import prepare_edit
    from gridar_desktop.engine.search import Search, SearchRequest, _logit
    from gridar_desktop.engine.tiny import tiny_backend
    torch.set_num_threads(1)
    b = tiny_backend(seed=3)
    e = prepare_edit(b, source_image(), box_mask(box=(20, 8, 36, 60)))        # token rows 1-7
    # slot 1 is rejected at the first band and continues a copy of slot 3 (same context), inheriting its verdict
    verdicts = [[0.6, 0.1, 0.5, 0.95], [0.6, 0.99, 0.5, 0.95]]
    scores = [0.7, 0.3, 0.6, 0.5]
    req = SearchRequest(prompt=PROMPT, n=4, seed=3, edit=e, strategy="replace", threshold=0.2)
    res = Search(b, _value_roles(verdicts, scores, weight), req).run()
    assert res.tree[0]["sources"] == [0, 3, 2, 3]
    if weight == 0.0:
        assert res.ranking == [0, 2, 3, 1] and res.selection is None and "selection" not in res.metadata()
        return
    mean = [(_logit(0.6) + _logit(0.6)) / 2, (_logit(0.95) + _logit(0.99)) / 2,
            (_logit(0.5) + _logit(0.5)) / 2, (_logit(0.95) + _logit(0.95)) / 2]
    keys = [_logit(s) + weight * m for s, m in zip(scores, mean)]
    assert res.ranking == sorted(range(4), key=lambda i: -keys[i]) and res.best == 1      # the copy, surer at band 2
    assert res.selection["weight"] == weight and res.selection["keys"] == pytest.approx(keys, abs=1e-3)
    assert res.metadata()["selection"]["verdict_logits"][1] == pytest.approx([_logit(0.95), _logit(0.99)],
                                                                              abs=1e-3)
    assert res.scores == scores                          # the scorer's own P, as shown, is unchanged
    # the request can keep the scorer alone (the benchmark's gridar-scorerpick); Best-of-N never weighs verdicts
    from dataclasses import replace
    res = Search(b, _value_roles(verdicts, scores, weight), replace(req, value_pick=False)).run()
    assert res.ranking == [0, 2, 3, 1]
    res = Search(b, _value_roles([], scores, weight), replace(req, method="best-of-n")).run()
    assert res.ranking == [0, 2, 3, 1]


def test_an_artists_kept_slot_carries_no_verdict_of_that_band():
    from test_edit import box_mask, source_image, PROMPT
    from gridar_desktop.engine.edit import prepare_edit
    from gridar_desktop.engine.search import PruneDecision, Search, SearchRequest, _logit
    from gridar_desktop.engine.tiny import tiny_backend
    torch.set_num_threads(1)
    b = tiny_backend(seed=3)
    e = prepare_edit(b, source_image(), box_mask(box=(20, 8, 36, 60)))

    class KeepAll:
        def review_verdicts(self, review):
            return PruneDecision([True] * 4, list(range(4)))

        def review_layouts(self, stage, proposals):
            return proposals
    req = SearchRequest(prompt=PROMPT, n=4, seed=3, edit=e, strategy="replace", threshold=0.2)
    res = Search(b, _value_roles([[0.6, 0.01, 0.5, 0.9], [0.6, 0.7, 0.5, 0.9]], [0.5] * 4, 1.0), req,
                 KeepAll()).run()
    assert res.selection["verdict_logits"][1] == pytest.approx([_logit(0.7)], abs=1e-3)
    assert res.best == 3
