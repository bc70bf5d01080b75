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
