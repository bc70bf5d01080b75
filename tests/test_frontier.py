"""Issue 29's instruments: the frontier's paired gap to Best-of-N's curve, the judge-as-verifier ceiling (a bound,
benchmark only), and the cheap verdict head on the generator's own hidden state. Tiny sizes: seconds."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import frontier  # noqa: E402

from gridar_desktop.engine.cheap_verifier import (CheapHead, CheapVerdictSearch, CheapVerifierRoles,  # noqa: E402
                                                  load_cheap_head, save_cheap_head)
from gridar_desktop.engine.cost import CostRecord  # noqa: E402
from gridar_desktop.engine.roles import PartialView  # noqa: E402


def _method(gflops: float, strict: list[float]) -> dict:
    return {"strict": float(np.mean(strict)), "strict_per_prompt": strict,
            "cost_per_image": {"total_flops": gflops * 1e9, "generator_flops": gflops * 1e9}}


def test_the_gap_to_best_of_n_is_paired_and_interpolated_in_log_flops():
    methods = {"best-of-n:2": _method(2.0, [0, 0, 1, 1]), "best-of-n:8": _method(8.0, [1, 1, 1, 0]),
               "gridar:4": _method(4.0, [1, 0, 1, 1]), "gridar:16": _method(16.0, [1, 1, 1, 1])}
    frontier.analyse(methods)
    v = methods["gridar:4"]["vs_best_of_n_curve"]
    assert v["between"] == ["best-of-n:2", "best-of-n:8"] and v["weight"] == pytest.approx(0.5)   # log-midpoint
    curve = np.array([0.5, 0.5, 1.0, 0.5])
    d = np.array([1, 0, 1, 1]) - curve
    assert v["diff"] == pytest.approx(d.mean())
    assert v["diff_se"] == pytest.approx(d.std(ddof=1) / 2)
    assert methods["gridar:16"]["vs_best_of_n_curve"] is None          # beyond the curve: no extrapolated claim
    assert "outside the curve's span" in frontier.table({"prompts": 4, "seeds": [0], "methods": methods,
                                                         "prompt_set": {"n": 4, "seed": 7}})


def test_the_plot_is_written(tmp_path):
    methods = {"best-of-n:1": _method(1.3, [0, 1, 0, 1]), "best-of-n:4": _method(7.5, [1, 1, 0, 1]),
               "ceiling-gridar:4": _method(13.0, [1, 1, 1, 1]), "cheap-gridar:4": _method(9.0, [1, 0, 1, 1])}
    frontier.analyse(methods)
    frontier.plot({"methods": methods}, tmp_path / "f.png")
    from PIL import Image
    assert Image.open(tmp_path / "f.png").size == (900, 560)


def _view_of(prompt: str, rows: int, seed: int = 0) -> PartialView:
    from gridar_desktop.shapes.scene import make_scene
    img, _ = make_scene(prompt, seed)
    return PartialView(np.array(img.convert("RGB")), rows, 8)


def test_the_ceiling_reads_contradictions_with_the_judge():
    """A view whose drawn part already shows what the prompt does not ask for is impossible (0); a view of the
    prompt's own scene is possible (1); the verdicts cost nothing."""
    class Inner:
        prune_threshold = 0.3
    roles = frontier.JudgeVerifierRoles(Inner())
    cost = CostRecord()
    views = [_view_of("a red circle", 8), _view_of("a blue square", 8)]
    assert roles.verify("a red circle", views, cost) == [1.0, 0.0]
    assert cost.total_flops == 0 and roles.prune_threshold == 0.3


def test_a_cheap_head_round_trips_and_reads_the_hidden_state(tmp_path):
    h = 8
    head = CheapHead({2: np.arange(h, dtype=np.float32) / 10}, {2: -0.5}, {2: 0.4})
    save_cheap_head(tmp_path / "head.safetensors", head)
    back = load_cheap_head(tmp_path / "head.safetensors")
    assert back.thresholds == {2: 0.4} and back.biases[2] == pytest.approx(-0.5)
    x = np.random.default_rng(0).normal(size=(3, h))
    want = 1 / (1 + np.exp(-(x @ (np.arange(h) / 10) - 0.5)))
    assert back.probability(2, x) == pytest.approx(want, rel=1e-5)
    assert list(back.probability(4, x)) == [1.0, 1.0, 1.0]            # a band without a head rejects nothing
    with pytest.raises(ValueError, match="no such cheap-verdict head"):
        load_cheap_head(tmp_path / "missing.safetensors")


def test_gridar_with_cheap_verdicts_prunes_by_the_head_and_counts_a_dot_product():
    """Through CheapVerdictSearch the head's P (here a constant from its bias) is GridAR's verdict at each band,
    and a verdict costs 2H FLOPs per candidate instead of an understanding pass."""
    from gridar_desktop.engine.janus_roles import JanusRoles
    from gridar_desktop.engine.search import SearchRequest
    from gridar_desktop.engine.tiny import tiny_backend
    torch.set_num_threads(1)
    b = tiny_backend(seed=5)
    hsize = b.model.config.text_config.hidden_size
    bias = 0.7
    head = CheapHead({r: np.zeros(hsize, np.float32) for r in (1, 2, 4)}, {r: bias for r in (1, 2, 4)},
                     {r: 0.1 for r in (1, 2, 4)})
    roles = CheapVerifierRoles(JanusRoles(b), b, head)
    [res] = CheapVerdictSearch(b, roles, [SearchRequest(prompt="a red circle", method="gridar", n=4, seed=1)]).run_all()
    verdicts = [node["p_possible"] for node in res.tree if "p_possible" in node]
    assert verdicts and all(v == pytest.approx([1 / (1 + math.exp(-bias))] * 4) for v in verdicts)
    assert all(node["threshold"] == 0.1 for node in res.tree if "p_possible" in node)    # the head's own
    verifier = res.cost.roles["verifier"]
    assert verifier.calls == len(verdicts)
    assert verifier.flops == pytest.approx(2.0 * hsize * 4 * verifier.calls)
    with pytest.raises(RuntimeError, match="CheapVerdictSearch"):       # a plain Search cannot hand it the state
        roles.verify("a red circle", [PartialView(np.zeros((8, 8, 3), np.uint8), 2, 8)], CostRecord())


def test_the_cheap_head_learns_the_outcome_and_prunes_as_often_as_the_verifier():
    """On synthetic candidates whose outcome is written in one direction of the hidden state, the head ranks them
    (held-out AUROC well above chance) and its threshold rejects the verifier's share of candidates."""
    from gridar_desktop.training.cheap_verifier import fit_head, measure
    rng = np.random.default_rng(0)

    def data(n_prompts: int) -> dict:
        m = n_prompts * 4 * 2
        ok = rng.random(m) < 0.4
        hidden = rng.normal(size=(m, 6)).astype(np.float32)
        hidden[:, 0] += 1.5 * ok
        return {"hidden": hidden, "ok": ok, "possible": ok | (rng.random(m) < 0.5),
                "p_verifier": rng.random(m).astype(np.float32), "rows": np.repeat([2, 4], m // 2),
                "prompt": np.tile(np.repeat(np.arange(n_prompts), 4), 2), "score": rng.random(m).astype(np.float32),
                "verifier_flops": np.array([1e6, 1e6])}
    train, test = data(60), data(30)
    head, info = fit_head(train, {2: 0.2, 4: 0.5})
    assert info["2"]["verifier_rejection_rate"] == pytest.approx((train["p_verifier"][:240] < 0.2).mean())
    for rows, lo in ((2, 0), (4, 240)):
        rejected = (head.probability(rows, train["hidden"][lo:lo + 240]) < head.thresholds[rows]).mean()
        assert abs(rejected - info[str(rows)]["verifier_rejection_rate"]) < 0.1
    report = measure(head, test, hidden_size=6, verifier_thresholds={2: 0.2, 4: 0.5})
    assert report["2"]["auroc_final_strict"]["cheap_head"] > 0.75
    assert report["flops_per_verdict"] == {"cheap_head": 12.0, "verifier": 1e6}
