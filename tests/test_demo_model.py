"""The shipped demo model, through the public backend, exactly as a fresh install uses it."""
import numpy as np
import pytest
import torch

from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.errors import PromptNotUnderstood
from gridar_desktop.engine.models import demo_model_dir
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.single import generate_batch
from gridar_desktop.shapes.judge import judge
from gridar_desktop.shapes.promptsets import make_prompt_set
from gridar_desktop.shapes.scene import make_scene

EASY = ["a red circle", "a blue square", "a green triangle", "a yellow circle", "two purple squares",
        "an orange triangle", "two red circles", "a blue triangle"]


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(2)
    return JanusBackend.load(demo_model_dir(), device="cpu", dtype="float32")


def test_ships_within_size_and_loads(demo):
    size = sum(f.stat().st_size for f in demo_model_dir().iterdir())
    assert size < 40 * 2**20
    assert demo.info.rows == 8 and demo.info.image_size == 64 and demo.info.prompt_format == "plain"


def test_generates_deterministically_under_a_seed(demo):
    p = SamplingParams(cfg=3.0)
    a = generate_batch(demo, ["two red circles and a blue square"], 2, p, seed=5)
    b = generate_batch(demo, ["two red circles and a blue square"], 2, p, seed=5)
    assert torch.equal(a.tokens, b.tokens) and np.array_equal(a.images, b.images)


def test_easy_prompts_beat_chance(demo):
    """Loose bound: a random image is essentially never exactly right; the model should often be."""
    out = generate_batch(demo, EASY, 3, SamplingParams(cfg=3.0), seed=0)
    prompts = [p for p in EASY for _ in range(3)]
    strict = np.mean([judge(img, p).strict for img, p in zip(out.images, prompts)])
    assert strict >= 0.3, strict


def test_vq_reconstructions_read_right(demo):
    """The shipped VQ through the library's own encode (normalised codebook) and our decode."""
    rows = make_prompt_set(60, 99)
    imgs = np.stack([np.asarray(make_scene(r["prompt"], i)[0]) for i, r in enumerate(rows)])
    ours = demo.encode_images(imgs)
    with torch.no_grad():
        x = torch.as_tensor(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        lib = demo.model.model.vqmodel.encode(x).image_tokens.view(len(imgs), -1)
    assert (ours == lib).float().mean() > 0.99          # the stored codebook is normalised: both rules agree
    rec = demo.decode_tokens(ours)
    ok = np.mean([judge(im, r["prompt"]).strict for im, r in zip(rec, rows)])
    assert ok >= 0.9, ok


def test_unknown_words_are_listed(demo):
    with pytest.raises(PromptNotUnderstood, match="'dragon'.*'castle'|'castle'.*'dragon'"):
        demo.prompt_ids("a red dragon and a castle")


def test_training_partial_views_are_the_engines_partial_decodes(demo):
    # the engine-views mix trains the verifier on exactly what the engine shows it for a partly drawn candidate
    from gridar_desktop.training.understand import blank_code, partial_decode
    vq = demo.model.model.vqmodel
    assert blank_code(vq) == demo.blank_token
    imgs = np.stack([np.array(make_scene(p, 3)[0]) for p in ("a red circle above a blue square", "three green squares")])
    px = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ours = partial_decode(vq, px, [2, 5], demo.blank_token)
    ours = ((ours + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    tokens = demo.encode_images(imgs)
    for i, rows in enumerate((2, 5)):
        engine = demo.decode_tokens(tokens[i:i + 1, :rows * demo.info.cols])[0]
        cut = rows * demo.info.image_size // demo.info.rows
        assert np.abs(ours[i, :cut].astype(int) - engine[:cut].astype(int)).max() <= 1
        assert (engine[cut:] == np.array(demo.canvas_colour, np.uint8)).all()    # nothing undrawn is shown
