"""The judging roles on a Janus understanding path (tiny random model): mechanics, not quality."""
import numpy as np
import pytest
import torch

from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.janus_roles import JanusRoles, masked_view
from gridar_desktop.engine.roles import PartialView, validate_reformulation
from gridar_desktop.engine.tiny import tiny_backend

PROMPT = "a red circle above a blue square"


@pytest.fixture(scope="module")
def roles():
    torch.set_num_threads(1)
    return JanusRoles(tiny_backend(seed=4))


def views(n, rows=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [PartialView(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), rows, 8) for _ in range(n)]


def test_probabilities_batched_with_cost(roles):
    cost = CostRecord()
    p = roles.verify(PROMPT, views(4), cost)
    assert len(p) == 4 and all(0.0 <= x <= 1.0 for x in p)
    v = cost.roles["verifier"]
    assert v.calls == 1 and v.prefill_token_rows == 4 * len(roles._ids("verify", PROMPT, views(1)[0]))
    # a quarter of the rows drawn: the language model reads a quarter of the image positions
    assert len(roles._ids("verify", PROMPT, None)) - len(roles._ids("verify", PROMPT, views(1)[0])) == 48
    assert v.flops > 2 * v.params * v.token_rows          # the vision tower is counted too
    s = roles.score(PROMPT, [x.image for x in views(3)], cost)
    assert len(s) == 3 and cost.roles["scorer"].calls == 1


def test_mixed_visible_rows_batch_equals_single_calls(roles):
    vs = views(2, rows=2) + views(2, rows=4)
    batch = roles.verify(PROMPT, vs, CostRecord())
    single = [roles.verify(PROMPT, [v], CostRecord())[0] for v in vs]
    assert batch == pytest.approx(single, abs=1e-4)


def test_batch_equals_one_by_one(roles):
    vs = views(3)
    batch = roles.verify(PROMPT, vs, CostRecord())
    single = [roles.verify(PROMPT, [v], CostRecord())[0] for v in vs]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_unreadable_answer_scores_lowest(roles, monkeypatch):
    """All mass on a token that is no answer: probability 0, not 0.5 and not 1."""
    vocab = roles.model.lm_head.out_features
    junk = roles.tok.convert_tokens_to_ids("triangle")

    def fake_head(h):
        out = torch.full((h.shape[0], vocab), -1e4)
        out[:, junk] = 1e4
        return out
    monkeypatch.setattr(roles.model.lm_head, "forward", fake_head)
    assert roles.score(PROMPT, [views(1)[0].image], CostRecord()) == [0.0]
    assert roles.verify(PROMPT, views(1), CostRecord()) == [0.0]


def test_reformulations_are_validated(roles):
    cost = CostRecord()
    out = roles.reformulate(PROMPT, views(2), cost)
    assert len(out) == 2 and all(o.startswith(PROMPT) for o in out)
    assert cost.roles["reformulator"].calls == 1


def test_validate_reformulation_rules():
    assert validate_reformulation(PROMPT, PROMPT + ", with the red circle at the top") == \
        PROMPT + ", with the red circle at the top"
    assert validate_reformulation(PROMPT, '"' + PROMPT + ', with the red circle at the top."') == \
        PROMPT + ", with the red circle at the top"
    assert validate_reformulation(PROMPT, "two red circles") == PROMPT            # changed the content
    assert validate_reformulation(PROMPT, PROMPT + " and a green square") == PROMPT  # not a clause after a comma
    assert validate_reformulation(PROMPT, "") == PROMPT


def test_hidden_rows_are_grey():
    v = views(1, rows=2)[0]
    m = masked_view(v)
    assert (m[16:] == 128).all() and np.array_equal(m[:16], v.image[:16])


def test_finished_reformulations_leave_the_batch(roles, monkeypatch):
    """Rows that emitted EOS are no longer computed (nor counted); the others continue with their own cache rows."""
    vocab = roles.model.lm_head.out_features
    eos, w = roles.tok.eos_token_id, roles.tok.convert_tokens_to_ids
    script = [[w("with"), eos, w("with")], [w("the"), w("the")], [eos, w("red")], [w("circle")], [eos]]
    seen = []

    def fake_head(h):
        want = script.pop(0)
        seen.append(h.shape[0])
        out = torch.full((h.shape[0], vocab), -1e4)
        out[torch.arange(h.shape[0]), torch.tensor(want)] = 1e4
        return out
    monkeypatch.setattr(roles.model.lm_head, "forward", fake_head)
    cost = CostRecord()
    out = roles.reformulate(PROMPT, views(3), cost)
    assert seen == [3, 2, 2, 1, 1]
    assert cost.roles["reformulator"].decode_token_rows == 2 + 2 + 1 + 1
    # "with the" is not a valid clause: falls back; the empty one is the prompt itself
    assert out == [PROMPT, PROMPT, PROMPT]


def test_shared_prefix_equals_one_forward_over_everything(roles):
    vs = views(2, rows=2) + views(2, rows=4)
    shared = roles.verify(PROMPT, vs, CostRecord())
    whole = roles._answer_prob("verify", PROMPT, vs, [masked_view(v) for v in vs], "possible", CostRecord(),
                               "verifier")
    assert shared == pytest.approx(whole, abs=1e-4)


def test_reformulation_continues_from_the_verifier_prefixes(roles):
    """After verify, reformulate computes only its question and answer; the text is the same as without reuse."""
    vs = views(3)
    alone_cost = CostRecord()
    roles._prefixes = {}
    alone, _ = roles._clauses([PROMPT] * 3, vs, alone_cost)          # the raw greedy continuations
    cost = CostRecord()
    roles.verify(PROMPT, vs, cost)
    after, _ = roles._clauses([PROMPT] * 2, vs[:2], cost)          # the survivors of the stage
    assert after == alone[:2] and all(len(a) > 2 for a in after)
    q = len(roles._question("layout", PROMPT))
    assert cost.roles["reformulator"].prefill_token_rows == 2 * q
    assert alone_cost.roles["reformulator"].prefill_token_rows == 3 * len(roles._ids("layout", PROMPT, vs[0]))
    assert roles._prefixes == {}                             # dropped after the stage


def test_calibrated_threshold_travels_with_the_model_folder(tmp_path):
    """training.calibrate measures the folder's verifier on held-out views, stores the threshold in gridar.json,
    and the roles loaded from that folder prune at it."""
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.search import DEFAULT_THRESHOLD, pruning_threshold
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training.calibrate import calibrate, write_threshold
    save_tiny_janus(tmp_path, seed=2)
    before = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert before.prune_threshold is None and pruning_threshold(before) == DEFAULT_THRESHOLD
    rec = calibrate(tmp_path, views=24)
    assert 0.0 <= rec["value"] <= 1.0 and set(rec["held_out"]) == {"2", "4"}
    assert rec["by_rows"] == {}                      # too few feasible views per row: the pooled one serves all
    write_threshold(tmp_path, rec)
    after = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert pruning_threshold(after) == rec["value"] == pruning_threshold(after, rows=4)


def test_each_verification_row_gets_its_own_threshold(tmp_path, monkeypatch):
    """With enough feasible views at a row, that row's threshold is the calibration rule over its own views."""
    import numpy as np

    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.search import pruning_threshold
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training import calibrate as cal
    save_tiny_janus(tmp_path, seed=2)
    monkeypatch.setattr(cal, "MIN_FEASIBLE_PER_ROW", 1)
    seen = {}
    real = cal.engine_p_possible

    def spy(backend, roles, views, batch=64):
        p = real(backend, roles, views, batch)
        seen["p"], seen["views"] = p, views
        return p
    monkeypatch.setattr(cal, "engine_p_possible", spy)
    rec = cal.calibrate(tmp_path, views=40)
    for r in ("2", "4"):
        at = np.array([v.rows == int(r) and v.feasible for v in seen["views"]])
        assert rec["by_rows"][r] == round(cal.threshold_for(seen["p"][at]), 4)
    cal.write_threshold(tmp_path, rec)
    roles = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert pruning_threshold(roles, rows=2) == rec["by_rows"]["2"] and pruning_threshold(roles, rows=3) == rec["value"]


def test_calibration_refuses_a_model_outside_the_shapes_world(tmp_path):
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training.calibrate import calibrate
    save_tiny_janus(tmp_path, seed=2)
    (tmp_path / "gridar.json").unlink()                  # no app metadata: a Janus-Pro style folder
    with pytest.raises(ValueError, match="not a shapes-world model"):
        calibrate(tmp_path, views=4)


# -- Janus-Pro format: a tiny random Janus with a byte-level BPE tokenizer, DeepSeek's special tokens and the
# imported folders' processor (chat template, default system prompt) ----------------------------------------------
BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
PRO_SPECIAL = [BOS, EOS, PAD, "<image_placeholder>", "<begin_of_image>", "<end_of_image>", "<|User|>",
               "<|Assistant|>"]
PRO_PROMPT = "a red fox in the snow"


def pro_model(seed: int = 0, chat_template: bool = True):
    """(model, processor) in the transformers format, Janus-Pro's layout in miniature: 32 px understanding
    images of 8 x 8 patches (64 image features), a 3-level VQ (8 x 8 tokens), untied text head."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (JanusConfig, JanusForConditionalGeneration, JanusImageProcessorPil,
                              JanusVisionConfig, JanusVQVAEConfig, LlamaConfig, PreTrainedTokenizerFast)

    from gridar_desktop.engine.importer.processor import make_processor
    from gridar_desktop.engine.janus_roles import PRO_LAYOUT, PRO_SCORE, PRO_SYSTEM, PRO_VERIFY
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [PRO_SYSTEM, PRO_VERIFY, PRO_SCORE, PRO_LAYOUT, PRO_PROMPT, "a blue bird on a branch",
              ", with the fox at the bottom left and the sky at the top", "yes no possible impossible"] * 10
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=PRO_SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    vocab = tok.get_vocab()
    text = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                       bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[PAD],
                       tie_word_embeddings=False)
    vision = JanusVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                               patch_size=4, mlp_ratio=2.0, projection_dim=64, depth=2, num_image_tokens=64)
    vq = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32,
                          channel_multiplier=[1, 2, 2], num_res_blocks=1, projection_dim=64,
                          image_token_embed_dim=64, num_hidden_layers=1)
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(JanusConfig(text_config=text, vision_config=vision, vq_config=vq,
                                                      image_token_id=vocab["<image_placeholder>"],
                                                      tie_word_embeddings=False)).eval()
    model.generation_config.pad_token_id = vocab[PAD]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   extra_special_tokens={"image_token": "<image_placeholder>",
                                                         "boi_token": "<begin_of_image>",
                                                         "eoi_token": "<end_of_image>"}, padding_side="left")
    improc = JanusImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = make_processor(improc, fast, 64)
    if not chat_template:
        proc.chat_template = None
    return model, proc


def pro_backend(seed: int = 0, chat_template: bool = True):
    from gridar_desktop.engine.backend import JanusBackend
    model, proc = pro_model(seed, chat_template)
    return JanusBackend(model, proc, "cpu")          # no gridar.json: the janus-pro format


def save_pro_folder(path, seed: int = 0):
    """A Janus-Pro-format model folder (weights, processor; no gridar.json) at `path`."""
    model, proc = pro_model(seed)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pro_roles():
    torch.set_num_threads(1)
    return JanusRoles(pro_backend(seed=3))


def pro_views(n, rows=2):
    return views(n, rows, size=32, seed=1)


def test_janus_pro_questions_carry_the_official_system_prompt(pro_roles):
    """The ids are DeepSeek's VLChatProcessor's: BOS, its system prompt, the "deepseek" user turn with the image
    expanded to BOI + IMAGE * F + EOI, the assistant tag; the folder's chat template gives the same ids as the
    built-in format, and the image's EOI ends the shared prefix."""
    from gridar_desktop.engine.janus_roles import PRO_SYSTEM, PRO_VERIFY
    tok, b = pro_roles.tok, pro_roles.b
    v = pro_views(1)[0]
    question = PRO_VERIFY.format(prompt=PRO_PROMPT, rows=2, total=8)
    official = (PRO_SYSTEM + "\n\n<|User|>: <image_placeholder>\n" + question + "\n\n<|Assistant|>:").replace(
        "<image_placeholder>", "<begin_of_image>" + "<image_placeholder>" * 64 + "<end_of_image>")
    want = [b.bos_id] + tok(official, add_special_tokens=False).input_ids
    assert pro_roles._ids("verify", PRO_PROMPT, v) == want
    assert PRO_SYSTEM.startswith("You are a helpful language and vision assistant. You are able to understand")
    # transformers' JanusProcessor holds the same system text
    from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT
    assert DEFAULT_SYSTEM_PROMPT == PRO_SYSTEM + "\n\n"
    no_template = JanusRoles(pro_backend(seed=3, chat_template=False))
    assert no_template.pro == pro_roles.pro and no_template._ids("verify", PRO_PROMPT, v) == want
    prefix = pro_roles._prefix_ids(v)
    assert prefix[-1] == b.eoi_id and want[:len(prefix)] == prefix and len(prefix) > 64 + 20


def test_janus_pro_reformulation_reuses_the_verifier_prefixes(pro_roles):
    """Verify through the shared prefix gives the probabilities of one forward over the whole question;
    reformulate after verify computes only its question and answer, with the clause it computes alone."""
    vs = pro_views(2, rows=2) + pro_views(1, rows=4)
    pro_roles.release()
    whole = pro_roles._answer_prob("verify", PRO_PROMPT, vs, [masked_view(v) for v in vs], "possible",
                                   CostRecord(), "verifier")
    cost = CostRecord()
    shared = pro_roles.verify(PRO_PROMPT, vs, cost)
    assert shared == pytest.approx(whole, abs=1e-5)
    prefix = len(pro_roles._prefix_ids(vs[0]))
    assert cost.roles["verifier"].prefill_token_rows == sum(len(pro_roles._ids("verify", PRO_PROMPT, v)) for v in vs)
    after, _ = pro_roles._clauses([PRO_PROMPT] * 2, vs[:2], cost)     # the survivors of the stage
    q = [len(pro_roles._question("layout", PRO_PROMPT, v)) for v in vs[:2]]
    assert cost.roles["reformulator"].prefill_token_rows == sum(q)       # no prefix, no vision tower again
    assert cost.roles["reformulator"].extra_flops == 0
    assert pro_roles._prefixes == {}
    alone_cost = CostRecord()
    alone, _ = pro_roles._clauses([PRO_PROMPT] * 2, vs[:2], alone_cost)
    assert after == alone and all(after)
    assert alone_cost.roles["reformulator"].prefill_token_rows == sum(q) + 2 * prefix


def script_head(roles, monkeypatch, script):
    """The text head answers `script`, one token per step, for every row."""
    vocab = roles.model.lm_head.out_features
    steps = list(script)

    def fake_head(h):
        out = torch.full((h.shape[0], vocab), -1e4)
        out[:, steps.pop(0) if steps else roles.tok.eos_token_id] = 1e4
        return out
    monkeypatch.setattr(roles.model.lm_head, "forward", fake_head)


def test_a_clause_cut_at_the_cap_is_rejected(roles, monkeypatch):
    """'... at the top left' cut after 'at the top' parses, but it is not what the reformulator said: a clause
    that does not end within the cap leaves the prompt unchanged; one that ends right at the cap is kept."""
    w, eos = roles.tok.convert_tokens_to_ids, roles.tok.eos_token_id
    clause = [w(x) for x in "with the red circle at the top left".split()]
    monkeypatch.setattr(roles, "max_new_tokens", 7)
    script_head(roles, monkeypatch, clause + [eos])
    assert roles.reformulate(PROMPT, views(1), CostRecord()) == [PROMPT]
    monkeypatch.setattr(roles, "max_new_tokens", 8)
    script_head(roles, monkeypatch, clause + [eos])
    assert roles.reformulate(PROMPT, views(1), CostRecord()) == [PROMPT + ", with the red circle at the top left"]


def test_the_janus_pro_clause_cap_fits_the_longest_layout_clause(pro_roles, roles):
    """Janus-Pro's cap holds the demo grammar's longest layout clause (six placements) as an English BPE tokenizes
    it (the real-shape test tokenizer); the demo keeps the cap its numbers were measured with."""
    from gridar_desktop.engine.janus_roles import CLAUSE_TOKENS
    from gridar_desktop.engine.real_shape import real_shape_processor
    from gridar_desktop.shapes.grammar import MAX_OBJECTS, Placement, format_layout_clause
    longest = format_layout_clause([Placement("purple", "triangle", None if i == 0 else 1, "bottom right")
                                    for i in range(MAX_OBJECTS)])
    n = len(real_shape_processor().tokenizer(longest, add_special_tokens=False).input_ids)
    assert pro_roles.max_new_tokens == CLAUSE_TOKENS["janus-pro"] > n > 24
    assert roles.max_new_tokens == CLAUSE_TOKENS["plain"] == 24


def test_janus_pro_clause_ends_at_a_line_break(pro_roles, monkeypatch):
    """Janus-Pro answers in one sentence: a line break ends the clause (what follows is not read)."""
    tok = pro_roles.tok
    clause = tok(", with the fox at the bottom left", add_special_tokens=False).input_ids
    newline = tok("\n", add_special_tokens=False).input_ids
    script_head(pro_roles, monkeypatch, clause + newline + tok("more words", add_special_tokens=False).input_ids)
    pro_roles.release()
    assert pro_roles.reformulate(PRO_PROMPT, pro_views(1), CostRecord()) == [
        PRO_PROMPT + ", with the fox at the bottom left"]


def test_calibration_is_said(tmp_path):
    """`calibrated` and the note: a verifier without a threshold says how to calibrate it; a threshold
    measured for other weights than the folder's is not used."""
    import json

    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.search import DEFAULT_THRESHOLD, pruning_threshold
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training.calibrate import write_threshold
    r = JanusRoles(tiny_backend(seed=4))
    assert not r.calibrated and "not calibrated" in r.calibration_note and "--prompts FILE --write" in \
        r.calibration_note and str(DEFAULT_THRESHOLD) in r.calibration_note and "\n" not in r.calibration_note
    save_tiny_janus(tmp_path, seed=2)
    from gridar_desktop.engine.janus_roles import weights_fingerprint
    fp = weights_fingerprint(tmp_path)
    assert fp and fp == weights_fingerprint(tmp_path)
    write_threshold(tmp_path, {"value": 0.3, "weights": fp})
    ok = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert ok.calibrated and pruning_threshold(ok) == 0.3 and "calibrated" in ok.calibration_note
    write_threshold(tmp_path, {"value": 0.3, "weights": "sha256:" + "0" * 64})
    other = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert not other.calibrated and pruning_threshold(other) == DEFAULT_THRESHOLD
    assert "other weights" in other.calibration_note and str(tmp_path) in other.calibration_note
    assert json.loads((tmp_path / "gridar.json").read_text())["prompt_format"] == "plain"    # other fields kept


def test_a_folders_own_chat_template_wraps_the_question():
    """A folder's chat template that renders the image and the question is used; the official system text goes
    first when the template drops system messages; a template that cannot render them gives the official format."""
    from gridar_desktop.engine.janus_roles import PRO_SYSTEM, pro_conversation
    _, proc = pro_model(seed=3)
    proc.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
                          "{% if c['type'] == 'image' %}<image_placeholder> {% else %}{{ c['text'] }}{% endif %}"
                          "{% endfor %}{% endif %}{% endfor %}{{ '\\n' }}ASSISTANT:")
    assert pro_conversation(proc) == (PRO_SYSTEM + "\n\nUSER: ", " ", "\nASSISTANT:")
    proc.chat_template = "{{ raise_exception('no images here') }}"
    assert pro_conversation(proc) == (PRO_SYSTEM + "\n\n<|User|>: ", "\n", "\n\n<|Assistant|>:")
