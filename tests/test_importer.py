"""`import-model`: an original-layout Janus folder (DeepSeek's MultiModalityCausalLM files) becomes a transformers
folder whose model computes exactly what the reference transformers model does.

The original folder is made here from a tiny random transformers-format reference: its tensors renamed back to the
original module names by `to_original` (written independently of the importer's rules), the vision qkv stacked,
the original-only tensors added, saved as a sharded pickle with an index, with an original-style config.json and
DeepSeek's tokenizer / processor files around a small byte-level BPE tokenizer trained in-process."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gridar_desktop.engine.errors import ModelLoadError
from gridar_desktop.engine.importer import (MANIFEST, ModelImportError, detect_layout, import_model,
                                            suggested_destination)

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
SPECIAL = [BOS, EOS, PAD, "<image_placeholder>", "<begin_of_image>", "<end_of_image>", "<|User|>", "<|Assistant|>",
           "<patch_placeholder>"]
IMAGE_SIZE, PATCH, CODES = 32, 4, 256
PROMPT = "a red circle above a blue square"


def bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["a red circle above a blue square", "two green triangles left of a yellow star", "Is it red? yes no",
            "You are a helpful language and vision assistant.", "describe the image in detail"] * 20
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIAL,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def reference(tok, seed=0, tied=False):
    """(model, processor) in the transformers format, shaped like Janus-Pro in miniature (untied head, SigLIP with
    16 heads, a 3-level VQ with attention in its last level, two-layer aligners)."""
    from transformers import (JanusConfig, JanusForConditionalGeneration, JanusImageProcessorPil, JanusProcessor,
                              JanusVisionConfig, JanusVQVAEConfig, LlamaConfig, PreTrainedTokenizerFast)
    vocab = tok.get_vocab()
    text = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                       bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[PAD],
                       tie_word_embeddings=tied)
    grid = IMAGE_SIZE // PATCH
    vision = JanusVisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=16, image_size=IMAGE_SIZE,
                               patch_size=PATCH, mlp_ratio=2.0, projection_dim=64, depth=2,
                               num_image_tokens=grid * grid)
    vq = JanusVQVAEConfig(embed_dim=8, num_embeddings=CODES, latent_channels=32, base_channels=32,
                          channel_multiplier=[1, 2, 2], num_res_blocks=1, projection_dim=64, image_token_embed_dim=64,
                          num_hidden_layers=2)
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(JanusConfig(text_config=text, vision_config=vision, vq_config=vq,
                                                      image_token_id=vocab["<image_placeholder>"],
                                                      tie_word_embeddings=tied)).eval()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   extra_special_tokens={"image_token": "<image_placeholder>",
                                                         "boi_token": "<begin_of_image>",
                                                         "eoi_token": "<end_of_image>"}, padding_side="left")
    improc = JanusImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3, min_size=14, rescale_factor=1 / 255, do_normalize=True)
    return model, JanusProcessor(image_processor=improc, tokenizer=fast, num_image_tokens=grid * grid)


def to_original(state: dict) -> dict:
    """The reference's tensors under the original module names (the inverse of the import)."""
    out = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    vq_subs = [(r"encoder\.down\.(\d+)\.block\.", r"encoder.conv_blocks.\1.res."),
               (r"encoder\.down\.(\d+)\.(attn|downsample)\.", r"encoder.conv_blocks.\1.\2."),
               (r"decoder\.up\.(\d+)\.block\.", r"decoder.conv_blocks.\1.res."),
               (r"decoder\.up\.(\d+)\.(attn|upsample)\.", r"decoder.conv_blocks.\1.\2."),
               (r"mid\.block_1\.", "mid.0."), (r"mid\.attn_1\.", "mid.1."), (r"mid\.block_2\.", "mid.2.")]
    for key, t in state.items():
        t = t.clone()
        if key.startswith("model.language_model."):
            out["language_model.model." + key[len("model.language_model."):]] = t
        elif key == "lm_head.weight":
            out["language_model.lm_head.weight"] = t
        elif key == "model.generation_embeddings.weight":
            out["gen_embed.weight"] = t
        elif key.startswith("model.generation_head."):
            out[key.replace("model.generation_head.proj_out", "gen_head.output_mlp_projector")
                   .replace("model.generation_head.", "gen_head.")] = t
        elif m := re.fullmatch(r"model\.(generation_aligner|aligner)\.(fc1|hidden_layers\.(\d+))\.(\w+)", key):
            index = 0 if m[2] == "fc1" else 2 * int(m[3]) + 2
            out[f"{'gen_aligner' if m[1] == 'generation_aligner' else 'aligner'}.layers.{index}.{m[4]}"] = t
        elif key.startswith("model.vqmodel."):
            rest = key[len("model.vqmodel."):]
            for pattern, repl in vq_subs:
                rest = re.sub(pattern, repl, rest)
            out["gen_vision_model." + rest] = t
        elif key.startswith("model.vision_model."):
            rest = key[len("model.vision_model."):]
            tower = "vision_model.vision_tower."
            if rest == "embeddings.position_embedding.weight":
                out[tower + "pos_embed"] = t.unsqueeze(0)
            elif rest.startswith("embeddings.patch_embedding."):
                out[tower + "patch_embed.proj." + rest.rsplit(".", 1)[1]] = t
            elif rest.startswith("post_layernorm."):
                out[tower + "norm." + rest.rsplit(".", 1)[1]] = t
            elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(\w+)", rest):
                qkv.setdefault(f"{tower}blocks.{m[1]}.attn.qkv.{m[3]}", {})[m[2]] = t
            else:
                rest = re.sub(r"encoder\.layers\.(\d+)\.", r"blocks.\1.", rest)
                rest = (rest.replace("self_attn.projection_layer", "attn.proj")
                        .replace("layer_norm1", "norm1").replace("layer_norm2", "norm2"))
                out[tower + rest] = t
        else:
            raise AssertionError(f"test helper cannot place {key}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    # tensors only the original has: the usage statistic and the SigLIP pooling head (both unused by Janus)
    out["gen_vision_model.quantize.codebook_used"] = torch.zeros(65536)
    out["vision_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, 64)
    out["vision_model.vision_tower.attn_pool.q.weight"] = torch.randn(64, 64)
    return out


def original_config(model) -> dict:
    c = model.config
    t, v, q = c.text_config, c.vision_config, c.vq_config
    return {
        "architectures": ["MultiModalityCausalLM"], "model_type": "multi_modality", "torch_dtype": "float32",
        "language_config": {"model_type": "llama", "hidden_size": t.hidden_size,
                            "intermediate_size": t.intermediate_size, "num_hidden_layers": t.num_hidden_layers,
                            "num_attention_heads": t.num_attention_heads,
                            "num_key_value_heads": t.num_key_value_heads,
                            "max_position_embeddings": t.max_position_embeddings, "vocab_size": t.vocab_size,
                            "torch_dtype": "float32", "tie_word_embeddings": t.tie_word_embeddings},
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"image_size": v.image_size, "model_name": "siglip_large_patch16_384",
                                     "select_feature": "same", "select_layer": -1}},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
                           "params": {"depth": 2, "input_dim": v.hidden_size, "n_embed": t.hidden_size,
                                      "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
                              "params": {"image_token_size": q.num_embeddings, "n_embed": q.embed_dim}},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                               "params": {"depth": 2, "input_dim": q.embed_dim, "n_embed": t.hidden_size,
                                          "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": t.hidden_size, "image_token_size": q.num_embeddings,
                                       "n_embed": t.hidden_size}},
    }


def write_original(folder: Path, model, tok, shards: int = 2) -> Path:
    """The reference as DeepSeek publishes Janus-Pro: pickled shards with an index, and their processor files."""
    folder.mkdir(parents=True, exist_ok=True)
    state = to_original(model.state_dict())
    keys = sorted(state)
    per = -(-len(keys) // shards)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[i * per:(i + 1) * per]}
        torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(original_config(model)))
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": BOS, "eos_token": EOS, "pad_token": None, "unk_token": None, "model_max_length": 16384,
        "tokenizer_class": "LlamaTokenizer", "clean_up_tokenization_spaces": False}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "additional_special_tokens": ["<image_placeholder>", "<patch_placeholder>", "<|User|>", "<|Assistant|>"],
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD}))
    grid = IMAGE_SIZE // PATCH
    (folder / "processor_config.json").write_text(json.dumps({
        "add_special_token": False, "ignore_id": -100, "image_tag": "<image_placeholder>", "mask_prompt": True,
        "num_image_tokens": grid * grid, "processor_class": "VLChatProcessor", "sft_format": "deepseek"}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "background_color": [127, 127, 127], "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "VLMImageProcessor", "image_size": IMAGE_SIZE, "image_std": [0.5, 0.5, 0.5],
        "min_size": 14, "processor_class": "VLChatProcessor", "rescale_factor": 1 / 255}))
    return folder


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def made(tmp_path_factory, tok):
    """(reference model, reference processor, original folder, imported folder, progress calls)."""
    root = tmp_path_factory.mktemp("import")
    model, processor = reference(tok)
    src = write_original(root / "Janus-Pro-tiny", model, tok)
    calls = []
    dst = import_model(src, root / "imported", progress=lambda *a: calls.append(a), max_shard_bytes=200_000)
    return model, processor, src, dst, calls


def backends(made):
    from gridar_desktop.engine.backend import JanusBackend
    model, processor, _, dst, _ = made
    return JanusBackend(model, processor, "cpu"), JanusBackend.load(dst, device="cpu", dtype="float32")


def test_imported_model_computes_exactly_what_the_reference_does(made):
    ref, imp = backends(made)
    assert imp.info == type(ref.info)(**{**ref.info.__dict__, "folder": str(made[3])})
    ids = ref.prompt_ids(PROMPT)
    assert imp.prompt_ids(PROMPT) == ids                                   # the tokenizer, as it was
    assert (imp.bos_id, imp.pad_id, imp.boi_id, imp.eoi_id, imp.image_id) == \
           (ref.bos_id, ref.pad_id, ref.boi_id, ref.eoi_id, ref.image_id)
    x = torch.tensor([ids])
    with torch.no_grad():
        a, b = ref.model(input_ids=x), imp.model(input_ids=x)             # text logits (the untied lm_head)
        assert torch.equal(a.logits, b.logits)
        ha = ref.model.model.language_model(input_ids=x).last_hidden_state[:, -1]
        hb = imp.model.model.language_model(input_ids=x).last_hidden_state[:, -1]
        assert torch.equal(ref.image_logits(ha), imp.image_logits(hb))    # image-token logits
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    assert torch.equal(ref.image_features(pictures), imp.image_features(pictures))   # SigLIP + aligner
    assert torch.equal(ref.encode_images(pictures), imp.encode_images(pictures))     # VQ encoder


def test_imported_model_draws_the_same_image_tokens(made):
    from gridar_desktop.engine.sampling import SamplingParams
    from gridar_desktop.engine.single import generate_batch
    ref, imp = backends(made)
    params = SamplingParams(cfg=5.0, greedy=True)
    a = generate_batch(ref, [PROMPT], 1, params, seed=0)
    b = generate_batch(imp, [PROMPT], 1, params, seed=0)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.shape == (1, (IMAGE_SIZE // PATCH) ** 2)
    assert np.array_equal(a.images, b.images)                             # the VQ decoder
    sampled = SamplingParams(cfg=5.0, temperature=1.0, top_k=50)
    assert torch.equal(generate_batch(ref, [PROMPT], 2, sampled, seed=3).tokens,
                       generate_batch(imp, [PROMPT], 2, sampled, seed=3).tokens)


def test_output_folder_is_sharded_with_a_manifest_and_the_processor(made):
    from transformers import AutoProcessor
    from gridar_desktop.engine.importer.shards import verify_manifest
    _, processor, _, dst, calls = made
    files = sorted(p.name for p in dst.iterdir())
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 1
    assert not any(f.endswith(".bin") for f in files)
    manifest = json.loads((dst / MANIFEST).read_text())
    assert set(manifest["files"]) == set(files) - {MANIFEST}
    verify_manifest(dst)
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "janus" and config["tie_word_embeddings"] is False
    proc = AutoProcessor.from_pretrained(dst, local_files_only=True)
    assert type(proc).__name__ == "JanusProcessor" and proc.use_default_system_prompt
    assert proc.num_image_tokens == (IMAGE_SIZE // PATCH) ** 2
    # the original's Llama tokenizer starts every text with BOS (add_bos_token defaults to true)
    assert proc.tokenizer("a red circle").input_ids[0] == proc.tokenizer.bos_token_id
    assert proc.tokenizer("a red circle", add_special_tokens=False).input_ids[0] != proc.tokenizer.bos_token_id
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it red?"}]}]
    assert proc.apply_chat_template(messages, add_generation_prompt=True) == \
        "<|User|>: <image_placeholder>\nIs it red?\n\n<|Assistant|>:"
    stages = [c[0] for c in calls]
    assert stages[0] == "reading" and {"converting", "checking", "loading"} <= set(stages)
    last = {s: (d, t) for s, d, t in calls}
    assert all(d == t for d, t in last.values())
    assert detect_layout(dst) == "janus" and detect_layout(made[2]) == "janus-original"


def test_a_damaged_byte_fails_the_manifest(made, tmp_path):
    import shutil
    from gridar_desktop.engine.importer.shards import verify_manifest
    copy = tmp_path / "copy"
    shutil.copytree(made[3], copy)
    shard = sorted(copy.glob("model-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ModelImportError, match=f"{shard.name}.*checksum"):
        verify_manifest(copy)


def test_shards_are_read_one_at_a_time(made, tmp_path, monkeypatch):
    from gridar_desktop.engine.importer import shards
    open_now, most = [0], [0]
    real_init, real_close = shards.Shard.__init__, shards.Shard.close

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])

    def close(self):
        if self._st is not None or self._dict is not None:
            open_now[0] -= 1
        real_close(self)

    monkeypatch.setattr(shards.Shard, "__init__", init)
    monkeypatch.setattr(shards.Shard, "close", close)
    import_model(made[2], tmp_path / "again", verify=False, max_shard_bytes=10 ** 9)
    assert most[0] == 1 and open_now[0] == 0
    # shards never draw on two source files: two source shards, so at least two output files
    assert len(list((tmp_path / "again").glob("model-*.safetensors"))) == 2


def test_loading_an_original_folder_says_to_import_it(made):
    from gridar_desktop.engine.backend import JanusBackend
    with pytest.raises(ModelLoadError, match="original Janus layout.*import-model"):
        JanusBackend.load(made[2], device="cpu")


# -- refusals: one line each, nothing left at DST ----------------------------------------------------------------
def refused(src, dst, match):
    with pytest.raises(ModelImportError, match=match) as e:
        import_model(src, dst)
    assert "\n" not in str(e.value)
    assert not Path(dst).exists()
    assert not [p for p in Path(dst).parent.iterdir() if ".gridar-" in p.name]
    return str(e.value)


def copy_original(made, tmp_path) -> Path:
    import shutil
    return Path(shutil.copytree(made[2], tmp_path / "src"))


def test_neither_format_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", tmp_path / "out", "no config.json: it is neither")
    refused(tmp_path / "nothing-here", tmp_path / "out", "does not exist")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    refused(tmp_path / "bert", tmp_path / "out", "holds a 'bert' model, not Janus")


def test_another_family_is_refused(tmp_path):
    from gridar_desktop.engine.tiny import save_tiny_janus, tiny_llava_folder
    tiny_llava_folder(tmp_path / "llava")
    refused(tmp_path / "llava", tmp_path / "out", r"holds a 'llava' model \(LlavaForConditionalGeneration\)")
    save_tiny_janus(tmp_path / "janus")
    refused(tmp_path / "janus", tmp_path / "out", "already in the transformers format")
    (tmp_path / "flow").mkdir()
    (tmp_path / "flow" / "config.json").write_text(json.dumps({"model_type": "multi_modality",
                                                                "language_config": {}, "vision_config": {}}))
    refused(tmp_path / "flow", tmp_path / "out", "no aligner_config, gen_vision_config.*no image generator")


def test_partial_download_is_refused(made, tmp_path):
    src = copy_original(made, tmp_path)
    (src / "pytorch_model-00002-of-00002.bin").unlink()
    refused(src, tmp_path / "out", r"incomplete download: 1 of the 2 weight files .* missing "
                                   r"\(pytorch_model-00002-of-00002.bin\)")
    for f in src.glob("pytorch_model*"):
        f.unlink()
    refused(src, tmp_path / "out", "has no weights")


def test_truncated_shard_is_refused(made, tmp_path):
    src = copy_original(made, tmp_path)
    shard = src / "pytorch_model-00001-of-00002.bin"
    shard.write_bytes(shard.read_bytes()[:1000])
    refused(src, tmp_path / "out", "could not read .*pytorch_model-00001-of-00002.bin.*incomplete or damaged")


def _rewrite(src: Path, edit) -> None:
    index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    name = "pytorch_model-00001-of-00002.bin"
    part = torch.load(src / name, weights_only=True)
    edit(part)
    torch.save(part, src / name)
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != name} | {k: name for k in part}
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))


def test_a_tensor_that_cannot_be_placed_is_refused(made, tmp_path):
    src = copy_original(made, tmp_path)
    _rewrite(src, lambda part: part.update({"gen_vision_model.extra.weight": torch.zeros(2)}))
    refused(src, tmp_path / "out", "holds the tensor 'gen_vision_model.extra.weight' that an original Janus")


def test_a_missing_tensor_is_refused(made, tmp_path):
    src = copy_original(made, tmp_path)
    _rewrite(src, lambda part: part.pop(sorted(k for k in part if k.startswith("gen_vision_model.decoder"))[0]))
    refused(src, tmp_path / "out", "lacks 1 tensor.* config.json calls for")
    # the index still naming a tensor that no file holds is a partial download
    src2 = copy_original(made, tmp_path / "b")
    index = json.loads((src2 / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["language_model.model.layers.9.mlp.up_proj.weight"] = "pytorch_model-00001-of-00002.bin"
    (src2 / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    refused(src2, tmp_path / "out", "incomplete download: 1 tensor.* in no weight file")


class NotATensor:
    pass


def test_a_pickle_with_code_is_not_opened(made, tmp_path):
    src = copy_original(made, tmp_path)
    _rewrite(src, lambda part: part.update({"language_model.model.norm.weight": NotATensor()}))
    refused(src, tmp_path / "out", "holds more than tensors, so it was not opened")


def test_an_occupied_destination_is_refused(made, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ModelImportError, match="already holds files"):
        import_model(made[2], tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_safetensors_source_in_bfloat16_keeps_every_tensor_exactly(tmp_path, tok):
    """Original folders may ship safetensors; the dtype is kept (bf16 here) and every tensor arrives unchanged."""
    from safetensors.torch import save_file
    from gridar_desktop.engine.backend import JanusBackend
    model, _ = reference(tok, seed=1)
    model = model.to(torch.bfloat16)
    src = write_original(tmp_path / "st", model, tok, shards=1)
    for f in src.glob("pytorch_model*"):
        f.unlink()
    save_file({k: v.contiguous() for k, v in to_original(model.state_dict()).items()}, str(src / "model.safetensors"),
              metadata={"format": "pt"})
    dst = import_model(src, tmp_path / "out")
    assert (dst / "model.safetensors").is_file()                          # small enough for one file
    assert json.loads((dst / "config.json").read_text())["dtype"] == "bfloat16"
    from safetensors.torch import load_file
    written = load_file(str(dst / "model.safetensors"))
    for key, value in model.state_dict().items():
        if key in written:                                              # tied copies are not written
            assert written[key].dtype == torch.bfloat16 and torch.equal(written[key], value), key
    # loaded in bf16 on the CPU, the image decoder and vision encoder are float32 copies of the same values
    loaded = JanusBackend.load(dst, device="cpu", dtype="bfloat16").model.state_dict()
    for key, value in model.state_dict().items():
        pixels = key.startswith(("model.vqmodel.", "model.vision_model.", "model.aligner."))
        assert loaded[key].dtype == (torch.float32 if pixels else torch.bfloat16), key
        assert torch.equal(loaded[key].to(torch.bfloat16), value), key


JANUS_PRO = {  # the official folders' config.json (deepseek-ai/Janus-Pro-1B and -7B), sizes only
    "1B": {"hidden": 2048, "inter": 5632, "layers": 24, "heads": 16},
    "7B": {"hidden": 4096, "inter": 11008, "layers": 30, "heads": 32},
}


@pytest.mark.parametrize("size", sorted(JANUS_PRO))
def test_real_janus_pro_shapes_give_the_official_configuration(size):
    """At Janus-Pro's real shapes (tensors on the meta device: nothing allocated) the derived configuration is the
    one transformers' own Janus-Pro folders hold, and every tensor finds its place."""
    from transformers import JanusConfig, JanusForConditionalGeneration, LlamaConfig
    from gridar_desktop.engine.importer.janus_config import derive_config
    from gridar_desktop.engine.importer.run import _plan
    s = JANUS_PRO[size]
    official = JanusConfig(text_config=LlamaConfig(vocab_size=102400, hidden_size=s["hidden"],
                                                   intermediate_size=s["inter"], num_hidden_layers=s["layers"],
                                                   num_attention_heads=s["heads"], num_key_value_heads=s["heads"],
                                                   max_position_embeddings=16384),
                           vision_config={"projection_dim": s["hidden"]},
                           vq_config={"projection_dim": s["hidden"], "image_token_embed_dim": s["hidden"]},
                           tie_word_embeddings=False)
    with torch.device("meta"):
        state = JanusForConditionalGeneration(official).state_dict()
        original = to_original(state)
        original["vision_model.vision_tower.attn_pool.kv.weight"] = torch.empty(2048, 1024)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in original.items()}
    cfg = {
        "model_type": "multi_modality",
        "language_config": {"hidden_size": s["hidden"], "intermediate_size": s["inter"],
                            "max_position_embeddings": 16384, "model_type": "llama", "num_attention_heads": s["heads"],
                            "num_hidden_layers": s["layers"], "num_key_value_heads": s["heads"],
                            "torch_dtype": "bfloat16", "vocab_size": 102400},
        "vision_config": {"cls": "CLIPVisionTower", "params": {"image_size": 384,
                                                               "model_name": "siglip_large_patch16_384",
                                                               "select_feature": "same", "select_layer": -1}},
        "aligner_config": {"cls": "MlpProjector", "params": {"depth": 2, "input_dim": 1024, "n_embed": s["hidden"],
                                                             "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "params": {"image_token_size": 16384, "n_embed": 8}},
        "gen_aligner_config": {"cls": "MlpProjector", "params": {"depth": 2, "input_dim": 8, "n_embed": s["hidden"],
                                                                 "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "params": {"image_token_embed": s["hidden"],
                                                             "image_token_size": 16384, "n_embed": s["hidden"]}},
    }
    tokens = {"bos": 100000, "eos": 100001, "pad": 100015, "image": 100581, "boi": 100016, "eoi": 100593}
    derived = derive_config(cfg, shapes, tokens, Path("config.json"))
    for part in ("text_config", "vision_config", "vq_config"):
        ours, theirs = getattr(derived, part).to_dict(), getattr(official, part).to_dict()
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                    "image_size", "patch_size", "mlp_ratio", "projection_dim", "depth", "num_image_tokens",
                    "embed_dim", "num_embeddings", "latent_channels", "base_channels", "channel_multiplier",
                    "num_res_blocks", "image_token_embed_dim", "num_patches", "tie_word_embeddings"):
            if key in theirs:
                assert ours[key] == theirs[key], (part, key)
    assert derived.vision_config.num_image_tokens == 576 and derived.vq_config.num_patches == 24
    plan = _plan({k: (shape, dtype, 0) for k, (shape, dtype) in shapes.items()}, derived, Path("src"))
    assert len(plan) == len(state)


def test_single_legacy_pickle_with_tied_embeddings(tmp_path, tok):
    """One pytorch_model.bin in torch's old (pre-zip) format, which cannot be memory-mapped, and a language model
    whose output head is its input embedding (both names saved, as a torch state_dict holds them)."""
    model, processor = reference(tok, seed=2, tied=True)
    src = write_original(tmp_path / "legacy", model, tok, shards=1)
    (src / "pytorch_model.bin.index.json").unlink()
    state = torch.load(src / "pytorch_model-00001-of-00001.bin", weights_only=True)
    assert "language_model.lm_head.weight" in state
    torch.save(state, src / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    (src / "pytorch_model-00001-of-00001.bin").unlink()
    dst = import_model(src, tmp_path / "out")
    from safetensors import safe_open
    with safe_open(str(dst / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()
    from gridar_desktop.engine.backend import JanusBackend
    imp = JanusBackend.load(dst, device="cpu", dtype="float32")
    x = torch.tensor([JanusBackend(model, processor, "cpu").prompt_ids(PROMPT)])
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, imp.model(input_ids=x).logits)


def test_suggested_destination_is_a_free_sibling(tmp_path):
    src = tmp_path / "Janus-Pro-1B"
    src.mkdir()
    assert suggested_destination(src) == tmp_path / "Janus-Pro-1B-transformers"
    (tmp_path / "Janus-Pro-1B-transformers").mkdir()
    assert suggested_destination(src) == tmp_path / "Janus-Pro-1B-transformers-2"


def test_gridar_import_model_then_generate(made, tmp_path, capsys):
    """The command line end to end: import the original folder, then generate with what it wrote."""
    from gridar_desktop.cli import main
    dst = tmp_path / "imported"
    assert main(["import-model", str(made[2]), str(dst)]) == 0
    assert capsys.readouterr().out.strip() == str(dst)
    out = tmp_path / "out.png"
    assert main(["generate", "a red fox in the snow", "--model", str(dst), "--device", "cpu", "-o", str(out)]) == 0
    assert out.is_file()
    assert main(["import-model", str(made[2]), str(dst)]) == 2           # the destination now holds files
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
