"""The generic image-text-to-text roles on a tiny random LLaVA folder built in-process."""
import json

import numpy as np
import pytest

from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.errors import ModelLoadError
from gridar_desktop.engine.roles import PartialView
from gridar_desktop.engine.tiny import tiny_llava_folder
from gridar_desktop.engine.vlm_roles import VLMRoles

PROMPT = "a red circle above a blue square"


@pytest.fixture(scope="module")
def roles(tmp_path_factory):
    return VLMRoles(tiny_llava_folder(tmp_path_factory.mktemp("llava")), device="cpu")


def views(n):
    rng = np.random.default_rng(1)
    return [PartialView(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 2, 8) for _ in range(n)]


def test_roles_batched(roles):
    cost = CostRecord()
    p = roles.verify(PROMPT, views(3), cost)
    s = roles.score(PROMPT, [v.image for v in views(2)], cost)
    r = roles.reformulate(PROMPT, views(2), cost)
    assert len(p) == 3 and all(0 <= x <= 1 for x in p) and len(s) == 2
    assert r == [PROMPT, PROMPT] or all(x.startswith(PROMPT) for x in r)   # random weights: falls back
    assert cost.roles["verifier"].calls == 1 and cost.roles["reformulator"].calls == 1
    assert cost.roles["scorer"].prefill_token_rows > 0


def test_batch_equals_single(roles):
    vs = views(3)
    batch = roles.verify(PROMPT, vs, CostRecord())
    single = [roles.verify(PROMPT, [v], CostRecord())[0] for v in vs]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_missing_folder_and_no_chat_template(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        VLMRoles(tmp_path / "nothing")
    folder = tiny_llava_folder(tmp_path / "plain", chat_template=False)
    with pytest.raises(ModelLoadError, match="no chat template"):
        VLMRoles(folder, device="cpu")


def test_unsupported_architecture(tmp_path):
    from gridar_desktop.engine.tiny import tiny_janus
    model, processor = tiny_janus()
    # a text-only Llama folder is not an image-text-to-text model
    model.model.language_model.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "llama"
    with pytest.raises(ModelLoadError, match="'llama'"):
        VLMRoles(tmp_path, device="cpu")


# -- a Qwen2.5-VL-class judge with its real processor configuration ------------------------------------------------

# Qwen2-VL-Instruct's chat template, as its folders ship it (chat_template.jinja / chat_template.json)
QWEN_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages "
    "%}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>"
    "\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
# Qwen2.5-VL-Instruct's preprocessor_config.json, as published (min/max pixels, patch 14, merge 2, CLIP statistics)
QWEN_PREPROCESSOR = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                     "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                     "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "Qwen2VLImageProcessor",
                     "processor_class": "Qwen2_5_VLProcessor"}


def tiny_qwen_vl_folder(path, seed: int = 0):
    """A tiny random Qwen2.5-VL folder laid out as the published ones are: config.json and safetensors from
    Qwen2_5_VLForConditionalGeneration (1 text layer of width 32, 1 vision block), the published
    preprocessor_config.json, chat_template.jinja, and a small byte-level BPE tokenizer (trained here on a few
    sentences) with Qwen's special tokens."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    corpus = [PROMPT, "possible impossible yes no Yes No", "with the red circle at the top and the blue square at "
              "the bottom", "You are a helpful assistant.", "The top of this image is drawn; the grey part below is "
              "not drawn yet. Prompt:", "Could the finished image still match the prompt exactly? Answer with one "
              "word: possible or impossible.", "Rewrite the prompt so it describes the final layout"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=QWEN_SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": 32768, "errors": "replace", "split_special_tokens": False}))
    (path / "preprocessor_config.json").write_text(json.dumps(QWEN_PREPROCESSOR))
    (path / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    ids = {t: tok.token_to_id(t) for t in QWEN_SPECIAL}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6}),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(cfg).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    return tiny_qwen_vl_folder(tmp_path_factory.mktemp("qwen2_5_vl"))


@pytest.fixture(scope="module")
def qwen(qwen_folder):
    from gridar_desktop.engine.judges import load_judge
    return load_judge(str(qwen_folder), None, device="cpu")


def test_a_qwen_vl_judge_loads_with_its_own_processor(qwen, qwen_folder):
    from gridar_desktop.engine.judges import judge_image_tokens
    assert type(qwen).__name__ == "VLMRoles" and type(qwen.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(qwen.processor).__name__ == "Qwen2_5_VLProcessor"
    assert qwen.processor.image_processor.patch_size == 14 and qwen.processor.image_processor.merge_size == 2
    # the question is the folder's chat template around the image, whose placeholder the processor expands to one
    # token per 2 x 2 patches: as many as the memory plan counts for the judge (a 384 px image: 28 x 28 patches)
    for side in (64, 384):
        batch = qwen._batch(["is it?"], [np.zeros((side, side, 3), np.uint8)])
        text = qwen.tok.decode(batch["input_ids"][0])
        assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                               "<|vision_start|><|image_pad|>") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert text.count("<|image_pad|>") == judge_image_tokens(qwen_folder, side) == {64: 4, 384: 196}[side]
        assert batch["image_grid_thw"].tolist() == [[1, {64: 4, 384: 28}[side], {64: 4, 384: 28}[side]]]


def test_a_qwen_vl_judge_verifies_scores_and_reformulates(qwen):
    cost = CostRecord()
    p = qwen.verify(PROMPT, views(3), cost)
    s = qwen.score([PROMPT, "a blue square"], [v.image for v in views(2)], cost)
    r = qwen.reformulate(PROMPT, views(2), cost)
    assert len(p) == 3 and all(0 < x < 1 for x in p) and len(s) == 2 and all(0 < x < 1 for x in s)
    assert all(x == PROMPT or x.startswith(PROMPT + ",") for x in r)       # random weights: mostly the fallback
    assert {k: cost.roles[k].calls for k in ("verifier", "scorer", "reformulator")} == {
        "verifier": 1, "scorer": 1, "reformulator": 1}
    assert cost.roles["reformulator"].decode_token_rows > 0 and cost.roles["verifier"].params == qwen.params
    # a calibration this judge never had is said, not assumed
    assert qwen.calibrated is False and qwen.prune_threshold is None and "not calibrated" in qwen.calibration_note


def test_a_qwen_vl_judges_batch_equals_its_single_questions(qwen):
    vs = [PartialView(v.image, rows, 8) for v, rows in zip(views(3), (2, 4, 8))]   # questions of three lengths
    batch = qwen.verify([PROMPT, "a blue square", PROMPT], vs, CostRecord())
    single = [qwen.verify(p, [v], CostRecord())[0] for p, v in zip([PROMPT, "a blue square", PROMPT], vs)]
    np.testing.assert_allclose(batch, single, rtol=1e-4)


def test_load_judge_self_and_bad_choices_are_one_line(tmp_path, qwen_folder):
    from gridar_desktop.engine.janus_roles import JanusRoles
    from gridar_desktop.engine.judges import JUDGE_SELF, judge_shape_for, load_judge
    from gridar_desktop.engine.tiny import tiny_backend
    b = tiny_backend(seed=0)
    assert isinstance(load_judge(JUDGE_SELF, b), JanusRoles) and judge_shape_for(JUDGE_SELF) is None
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    for spec, words in [(tmp_path / "none", "does not exist"), (tmp_path / "file", "is a file"),
                        (tmp_path / "empty", "has no config.json")]:
        with pytest.raises(ModelLoadError, match=words) as e:
            load_judge(str(spec), b)
        assert "\n" not in str(e.value)


def test_a_processor_that_needs_torchvision_says_how_to_install_it(monkeypatch, tmp_path):
    """Where AutoProcessor fails, torchvision cannot be used and the processor takes no video processor (so it
    cannot be built without one), the error names torchvision and the build to install."""
    import transformers

    from gridar_desktop.engine import judges, vlm_roles
    folder = tiny_llava_folder(tmp_path / "llava")

    def fail(*a, **k):
        raise ImportError("this processor requires the Torchvision library but it was not found\nmore lines")
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", fail)
    monkeypatch.setattr(judges, "torchvision_problem", lambda: "torchvision 9.9 is installed but does not load")
    with pytest.raises(ModelLoadError) as e:
        VLMRoles(folder, device="cpu")
    msg = str(e.value)
    assert "needs torchvision, and torchvision 9.9 is installed but does not load" in msg and "\n" not in msg
    assert "pip install torchvision==" in msg
    # with a torchvision that loads, the processor's own error is said instead
    monkeypatch.setattr(judges, "torchvision_problem", lambda: None)
    with pytest.raises(ModelLoadError, match="could not load the processor .*requires the Torchvision library"):
        VLMRoles(folder, device="cpu")
    assert vlm_roles._processor_without_video(folder) is None          # LLaVA has no video processor


def test_the_matching_torchvision_release():
    from gridar_desktop.engine.judges import matching_torchvision, torchvision_problem
    assert matching_torchvision("2.13.0+cpu") == "0.28.0" and matching_torchvision("2.6.0") == "0.21.0"
    assert matching_torchvision("2.14.1+cu130") == "0.29.1" and matching_torchvision("1.13.1") is None
    problem = torchvision_problem()
    assert problem is None or "torchvision" in problem


def test_an_edits_partial_view_is_shown_whole_with_only_its_undrawn_pixels_grey(qwen, monkeypatch):
    from gridar_desktop.engine import vlm_roles
    seen = []
    monkeypatch.setattr(qwen, "_prob", lambda qs, images, *a: seen.append((qs, images)) or [0.5] * len(qs))
    img = np.full((64, 64, 3), 200, np.uint8)
    undrawn = np.zeros((64, 64), bool)
    undrawn[40:50, 10:20] = True
    qwen.verify(PROMPT, [PartialView(img, 2, 8, undrawn), PartialView(img, 2, 8)], CostRecord())
    (edit_q, gen_q), (edit_img, gen_img) = seen[0]
    assert "being edited" in edit_q and "top 2 of 8 rows" in gen_q
    assert (edit_img[undrawn] == vlm_roles.masked_view(PartialView(img, 2, 8), edit=False)[63, 0]).all()
    assert (edit_img[~undrawn] == 200).all() and (gen_img[16:] != 200).all() and (gen_img[:16] == 200).all()


def test_a_janus_folder_judges_with_its_own_model_and_the_generators_folder_with_the_loaded_one(tmp_path):
    from gridar_desktop.engine import memory_plan as mp
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.janus_roles import JanusRoles
    from gridar_desktop.engine.judges import load_judge
    from gridar_desktop.engine.search import SearchRequest
    from gridar_desktop.engine.tiny import save_tiny_janus
    save_tiny_janus(tmp_path / "gen", seed=0)
    save_tiny_janus(tmp_path / "judge", seed=1)
    b = JanusBackend.load(tmp_path / "gen", device="cpu")
    own = load_judge(str(tmp_path / "gen"), b)
    assert isinstance(own, JanusRoles) and own.b is b                      # no second copy of the same weights
    other = load_judge(str(tmp_path / "judge"), b)
    assert isinstance(other, JanusRoles) and other.model is not b.model
    req = SearchRequest(prompt=PROMPT, method="gridar", n=4)
    judged, alone = mp.plan_request(b, other, req), mp.plan_request(b, own, req)
    assert judged.weights["judging model"] == sum(p.numel() * 4 for p in other.model.parameters())
    assert "judging model" not in alone.weights and judged.judge_model.image_tokens == other.n_image_tokens == 64
