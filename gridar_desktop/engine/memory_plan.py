"""What a run needs in memory, computed from the model's configuration before any work, and checked against what
the device has free.

A run holds, beside the weights of every loaded model, the generator's KV cache (every layer stores a key and a
value vector per attention head, position and cache row; the rows are candidates x guidance rows, the positions the
prompt plus the image tokens), one forward pass's activations, the VQ decoder's activations when candidates are
turned into pixels, and the judging calls' own cache and activations. These do not all happen at once (a decode,
then the VQ decoder, then the scorer), so the plan walks the moments of a run (the prompt's prefill, decoding, a
band's previews and verdicts, the layout rows' prefill, a rollout, the final decode and pick) and takes the one that
needs most; a margin covers allocator rounding, fragmentation and library workspaces.

The numbers are estimates of what the tensors hold, element by element: the KV cache is exact (a test compares it
with a real cache), the weights are counted on the architecture itself (a model built on the meta device, or the
loaded one), the activations are upper bounds of the largest tensors alive at once.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import torch

from .defaults import DTYPE_ALIASES, GROUP
from .errors import EngineError

GIB = 1024 ** 3
MIB = 1024 ** 2
# Allocator rounding, fragmentation and library workspaces (cuBLAS, attention kernels): a fixed part and a share of
# everything a run allocates and frees while it goes.
MARGIN_FIXED = 256 * MIB
MARGIN_SHARE = 0.10
# The judging questions around an image (the Janus-Pro instruction and chat template run to about 100 tokens).
JUDGE_QUESTION_TOKENS = 128
# The most candidates `largest_n` looks at.
MAX_PLANNED_N = 256

# every dtype name and alias (`defaults.DTYPE_ALIASES`) the engine accepts -> its torch dtype
DTYPE_NAMES = {name: getattr(torch, name) for name in ("float32", "bfloat16", "float16")}
DTYPE_NAMES.update({alias: DTYPE_NAMES[name] for alias, name in DTYPE_ALIASES.items()})


class DoesNotFit(EngineError):
    """A run whose planned memory exceeds what the device has free; the message names both and what fits."""


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype '{dtype}'; use float32, bfloat16 or float16")
    return DTYPE_NAMES[dtype]


def _size(dtype: torch.dtype) -> int:
    return dtype.itemsize


def gb(n: float) -> str:
    """Bytes in binary gigabytes (GiB), written "GB" as a card's box, nvidia-smi and system monitors do; below
    1 GB in MB (a 30 MB cache must not read "0.0 GB")."""
    return f"{n / GIB:.1f} GB" if n >= 0.95 * GIB else f"{n / MIB:.0f} MB"


# -- the model's shape ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelShape:
    """The numbers of a Janus model the plan reads."""
    layers: int
    kv_heads: int
    head_dim: int
    heads: int
    hidden: int
    intermediate: int
    image_tokens: int               # image tokens the generator draws (rows x cols)
    image_features: int             # understanding features per image (the judging questions read them)
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    vq_latent: int                  # token grid side: the VQ decoder's first resolution
    vq_base_channels: int
    vq_channel_multiplier: tuple[int, ...]
    vq_latent_channels: int
    codebook: int
    params: dict = field(default_factory=dict)   # parameters per part: language model, vision encoder, VQ, image head
    param_bytes: dict = field(default_factory=dict)   # a loaded model's bytes per part (its parts' own dtypes)


def _text(cfg):
    return getattr(cfg, "text_config", None) or getattr(cfg, "language_config", None)


def _janus_config(cfg):
    """A JanusConfig, or a config.json dict turned into one (fields it lacks take transformers' defaults, as a load
    would)."""
    if isinstance(cfg, dict):
        from transformers import JanusConfig
        data = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "model_type")}
        return JanusConfig(**data)
    return cfg


@lru_cache(maxsize=8)
def _meta_params(config_json: str) -> dict:
    """Parameters per part, counted on the architecture built on the meta device (no memory, about 0.3 s at 7B)."""
    from transformers import JanusConfig, JanusForConditionalGeneration
    with torch.device("meta"):
        model = JanusForConditionalGeneration(JanusConfig(**json.loads(config_json)))
    return params_by_part(model)


def params_by_part(model, in_bytes: bool = False) -> dict:
    """A JanusForConditionalGeneration's parameters per loaded part (`in_bytes`: their bytes, each in its own
    dtype)."""
    m = model.model
    seen: set[int] = set()          # a tied head shares the embedding's tensor: counted once

    def count(*mods) -> int:
        mine = {id(p): p for mod in mods for p in mod.parameters() if id(p) not in seen}
        seen.update(mine)
        return sum(p.numel() * (p.element_size() if in_bytes else 1) for p in mine.values())
    return {"language model": count(m.language_model, model.lm_head),
            "vision encoder": count(m.vision_model, m.aligner),
            "VQ": count(m.vqmodel),
            "image head": count(m.generation_embeddings, m.generation_aligner, m.generation_head)}


def model_shape(cfg, model=None) -> ModelShape:
    """The shape of a Janus model from its config (a JanusConfig or a config.json dict); with `model` (the loaded
    one), its parameters are counted on it instead of on a meta-device build."""
    cfg = _janus_config(cfg)
    t, v, q = _text(cfg), cfg.vision_config, cfg.vq_config
    heads = t.num_attention_heads
    kv_heads = getattr(t, "num_key_value_heads", None) or heads
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // heads
    grid = v.image_size // v.patch_size
    param_bytes: dict = {}
    if model is not None:
        params = params_by_part(model)
        param_bytes = params_by_part(model, in_bytes=True)
    else:
        params = dict(_meta_params(json.dumps(cfg.to_dict(), sort_keys=True, default=str)))
    return ModelShape(layers=t.num_hidden_layers, kv_heads=kv_heads, head_dim=head_dim, heads=heads,
                      hidden=t.hidden_size, intermediate=t.intermediate_size, image_tokens=grid * grid,
                      image_features=v.num_image_tokens, vision_hidden=v.hidden_size,
                      vision_intermediate=int(v.hidden_size * v.mlp_ratio), vision_heads=v.num_attention_heads,
                      vq_latent=grid, vq_base_channels=q.base_channels,
                      vq_channel_multiplier=tuple(q.channel_multiplier), vq_latent_channels=q.latent_channels,
                      codebook=q.num_embeddings, params=params, param_bytes=param_bytes)


@dataclass(frozen=True)
class JudgeShape:
    """A separate judging model (an image-text-to-text folder): its weights and its cache per position."""
    name: str
    weight_bytes: int
    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    heads: int
    image_tokens: int = 1024         # what one image costs it in positions (processors differ; a stated guess)


def judge_shape(config: dict, weight_bytes: int, name: str = "judge", image_tokens: int = 1024) -> JudgeShape:
    """A judge folder's config.json dict (the language part in text_config, or at the top) -> its `JudgeShape`."""
    t = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    heads = int(t.get("num_attention_heads", 1))
    hidden = int(t.get("hidden_size", 0))
    return JudgeShape(name, int(weight_bytes), int(t.get("num_hidden_layers", 0)),
                      int(t.get("num_key_value_heads") or heads), int(t.get("head_dim") or hidden // max(1, heads)),
                      hidden, int(t.get("intermediate_size", 4 * hidden)), heads, image_tokens)


def safetensors_bytes(folder: str | Path, dtype: torch.dtype | str) -> int:
    """What a folder's safetensors weights take once loaded in `dtype` (floating tensors take dtype's size, others
    their own), read from the files' headers only."""
    import struct
    dt = _dtype(dtype)
    size = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    total = 0
    for file in sorted(Path(folder).expanduser().glob("*.safetensors")):
        try:
            with open(file, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n)) if n < 100 * MIB else None
        except (OSError, ValueError, struct.error):
            header = None
        if not isinstance(header, dict):
            from .errors import ModelLoadError
            raise ModelLoadError(f"'{file}' is not a safetensors file GridAR can read; the folder may be damaged")
        for key, rec in header.items():
            if key == "__metadata__" or not isinstance(rec, dict):
                continue
            numel = math.prod(rec.get("shape", []))
            kind = rec.get("dtype", "F32")
            total += numel * (_size(dt) if kind in ("F64", "F32", "F16", "BF16") else size.get(kind, 4))
    return total


# -- the request ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunShape:
    """What a run asks for, as the plan reads it."""
    method: str = "gridar"              # gridar | best-of-n | single
    n: int = 4                          # candidates per job
    jobs: int = 1                       # jobs run together (a benchmark batch)
    prompt_tokens: int = 40             # the longest prompt row, template and markers included
    guidance_rows: int | None = None    # cache rows per candidate: 2 (two-way), 3 (three-way); None: by the method
    reformulate: bool = True
    strategy: str = "three-way"
    verify_by: str = "view"             # rollout: a fork of the cache is completed at every verified band
    verified_until: float = 0.5         # the last verified band (the default schedule verifies at 1/4 and 1/2)
    clause_tokens: int = 24             # what a reformulation may add to the prompt row
    judge: bool = True                  # judging calls run (not for a single image)
    edit: bool = False                  # an edit prefills kept codes before its first redrawn token

    @property
    def rows_per_candidate(self) -> int:
        if self.guidance_rows is not None:
            return self.guidance_rows
        three = self.method == "gridar" and self.reformulate and self.strategy == "three-way"
        return 3 if three else 2

    @property
    def candidates(self) -> int:
        return self.n * self.jobs


def kv_bytes_per_position(shape: ModelShape | JudgeShape, dtype: torch.dtype | str) -> int:
    """One cache row at one position: layers x (key + value) x kv heads x head size x bytes."""
    return shape.layers * 2 * shape.kv_heads * shape.head_dim * _size(_dtype(dtype))


def kv_bytes(shape: ModelShape | JudgeShape, dtype: torch.dtype | str, rows: int, positions: int) -> int:
    return kv_bytes_per_position(shape, dtype) * rows * positions


def vq_decode_bytes(shape: ModelShape, dtype: torch.dtype | str, batch: int) -> int:
    """The VQ decoder's largest activations alive at once for `batch` images: at each level a residual block holds
    its input, the normalised copy, its activation's temporary and the next result (4 tensors of the wider channel
    count; measured on the CPU allocator, `tests/test_memory_plan.py`), and an upsampling holds its input, the
    enlarged copy and the convolution's result; the last level runs at the image size."""
    mult = shape.vq_channel_multiplier
    base = shape.vq_base_channels
    levels = [base * m for m in reversed(mult)]        # decode order: widest channels at the token grid first
    side = shape.vq_latent
    c_in = levels[0]
    peak = (shape.vq_latent_channels + c_in) * side * side
    for j, c in enumerate(levels):
        peak = max(peak, 4 * max(c_in, c) * side * side)
        if j < len(levels) - 1:
            peak = max(peak, c * side * side + 2 * c * (2 * side) ** 2)
            side *= 2
        c_in = c
    peak = max(peak, 3 * c_in * side * side + 3 * side * side)      # the output convolution into 3 channels
    return peak * batch * _size(_dtype(dtype))


def forward_bytes(hidden: int, intermediate: int, heads: int, rows: int, positions: int, dtype: torch.dtype | str,
                  context: int | None = None) -> int:
    """One transformer forward's largest activations over `rows` x `positions` new positions attending to `context`
    positions: the residual stream and a normalised copy, the MLP's gate, up and product, and the attention scores
    with their softmax (materialised where the attention kernel does not fuse them)."""
    b = _size(_dtype(dtype))
    context = positions if context is None else context
    stream = rows * positions * (2 * hidden + 3 * intermediate)
    scores = 2 * rows * heads * positions * context
    return (stream + scores) * b


# -- the plan ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """A run's memory by part (bytes). `weights` is per loaded model; the other parts are those alive at the run's
    peak, the moment (`phase`) that needs most: the generator's cache with the forward, the VQ decode or the judging
    calls of that moment (they run one after another, never together). `phases` gives every moment's need."""
    weights: dict
    kv_cache: int                 # the generator's cache at the peak (with a rollout's copy, when one is alive)
    activations: int              # the generator's forward at the peak
    vq_decode: int
    judge: int                    # the judging calls' cache and activations at the peak
    margin: int
    model: ModelShape
    run: RunShape
    dtype: str
    judge_model: JudgeShape | None = None
    positions: int = 0            # cache positions of a finished candidate
    phase: str = ""
    phases: dict = field(default_factory=dict)
    vq_dtype: str | None = None   # the VQ decoder's dtype where it differs from the model's

    @property
    def weight_bytes(self) -> int:
        return sum(self.weights.values())

    @property
    def run_bytes(self) -> int:
        """What the run adds to loaded weights."""
        return self.kv_cache + self.activations + self.vq_decode + self.judge + self.margin

    @property
    def total(self) -> int:
        return self.weight_bytes + self.run_bytes

    def need(self, weights_loaded: bool = False) -> int:
        return self.run_bytes if weights_loaded else self.total

    def fits(self, free_bytes: int, weights_loaded: bool = False) -> bool:
        """Whether the run fits in `free_bytes` (with `weights_loaded`, the weights are already resident and
        `free_bytes` is what is left beside them)."""
        return self.need(weights_loaded) <= free_bytes

    def with_n(self, n: int, jobs: int | None = None) -> "Plan":
        return plan(self.model, self.dtype, replace(self.run, n=n, jobs=self.run.jobs if jobs is None else jobs),
                    self.judge_model, self.vq_dtype)

    def largest_n(self, free_bytes: int, weights_loaded: bool = False) -> int:
        """The largest N (a multiple of GridAR's group for GridAR; 1 for a single image) that fits; 0 if none."""
        if self.run.method == "single":
            return 1 if self.with_n(1).fits(free_bytes, weights_loaded) else 0
        step = GROUP if self.run.method == "gridar" else 1
        best = 0
        for n in range(step, MAX_PLANNED_N + 1, step):      # the need grows with N: stop at the first miss
            if not self.with_n(n).fits(free_bytes, weights_loaded):
                break
            best = n
        return best

    def largest_batch(self, free_bytes: int, weights_loaded: bool = True, most: int = 1024) -> int:
        """The most jobs of this N that fit together (a benchmark's batch); 0 if not even one."""
        best = 0
        for jobs in range(1, most + 1):
            if not self.with_n(self.run.n, jobs).fits(free_bytes, weights_loaded):
                break
            best = jobs
        return best

    def parts(self) -> dict[str, int]:
        out = {f"weights: {k}": v for k, v in self.weights.items()}
        out.update({"KV cache": self.kv_cache, "activations": self.activations, "VQ decode": self.vq_decode,
                    "judging": self.judge, "margin": self.margin})
        return out

    def summary(self, weights: bool = True) -> str:
        """One line: the parts in words (`weights`: the weights' too)."""
        r = self.run
        out = [f"weights {gb(self.weight_bytes)}"] if weights else []
        out += [f"KV cache {gb(self.kv_cache)} for {r.candidates} candidate{'s' if r.candidates > 1 else ''} x "
                f"{r.rows_per_candidate} guidance rows x up to {self.positions:,} positions"
                + (" and a rollout's copy" if "rollout" in self.phase else "")]
        out += [f"{name} {gb(v)}" for name, v in (("VQ decode", self.vq_decode), ("judging", self.judge),
                                                 ("activations", self.activations)) if v >= 0.05 * GIB]
        return ", ".join(out + [f"margin {gb(self.margin)}"])

    def to_json(self) -> dict:
        return {"total": self.total, "run": self.run_bytes, "parts": self.parts(), "peak": self.phase,
                "phases": self.phases, "dtype": self.dtype, "positions": self.positions,
                "request": asdict(self.run)}


def plan(model, dtype: torch.dtype | str, run: RunShape | None = None, judge: JudgeShape | None = None,
         vq_dtype: torch.dtype | str | None = None, **request) -> Plan:
    """What a run needs. `model`: a ModelShape, a JanusConfig or a config.json dict; `dtype`: the weights' and the
    cache's; `run` (or its fields as keywords, e.g. method="gridar", n=8, guidance_rows=3, prompt_tokens=40,
    verify_by="rollout"); `judge`: a separate judging model, if any; `vq_dtype`: the VQ decoder's, when it differs."""
    shape = model if isinstance(model, ModelShape) else model_shape(model)
    dt = _dtype(dtype)
    name = str(dt).replace("torch.", "")
    vq_dt = _dtype(vq_dtype) if vq_dtype is not None else dt
    run = replace(run or RunShape(), **request)
    if run.n < 1 or run.jobs < 1:
        raise ValueError("a run has at least one candidate and one job")
    # a loaded model's weights are what it holds; a configuration's are all in `dtype`
    # (mixed precision on a CPU: the VQ and the vision encoder are held in `vq_dtype`)
    weights = dict(shape.param_bytes) or {k: v * _size(vq_dt if k in ("VQ", "vision encoder") else dt)
                                          for k, v in shape.params.items()}
    if judge is not None:
        weights[judge.name] = judge.weight_bytes
    gridar = run.method == "gridar"
    cands = run.candidates
    rows = run.rows_per_candidate * cands

    # the generator's cache: every row reads the longest prompt row (rows share one cache by left padding), a
    # reformulated row its clause too, then every image token
    clause = run.clause_tokens if gridar and run.reformulate else 0
    prompt = run.prompt_tokens + clause
    positions = prompt + shape.image_tokens
    band = math.ceil(run.verified_until * shape.image_tokens) if gridar else 0
    full = kv_bytes(shape, dt, rows, positions)
    at_band = kv_bytes(shape, dt, rows, prompt + band)
    grow = kv_bytes_per_position(shape, dt) // max(1, shape.layers) * rows * positions  # a layer copied by a concat

    # the generator's forwards: a decoding step (one position per row over the whole cache, and the float32 image
    # logits guidance reads), the prompt rows (an edit: with its kept codes), GridAR's new layout rows
    step = (forward_bytes(shape.hidden, shape.intermediate, shape.heads, rows, 1, dt, positions)
            + 4 * rows * shape.codebook * 4)
    first = forward_bytes(shape.hidden, shape.intermediate, shape.heads, 2 * run.jobs,
                          run.prompt_tokens + (shape.image_tokens if run.edit else 0), dt)
    layout = forward_bytes(shape.hidden, shape.intermediate, shape.heads, cands, prompt + band, dt)

    vq = vq_decode_bytes(shape, vq_dt, cands)

    # the judging calls over every candidate at once: a cache for the questions and one forward
    judge_kv = judge_act = 0
    if run.judge and run.method != "single":
        if judge is None:           # the generator's own understanding path: its vision encoder, then its LM
            jpos = shape.image_features + JUDGE_QUESTION_TOKENS + run.clause_tokens
            judge_act = max(forward_bytes(shape.vision_hidden, shape.vision_intermediate, shape.vision_heads,
                                          cands, shape.image_features, dt),
                            forward_bytes(shape.hidden, shape.intermediate, shape.heads, cands, jpos, dt))
            judge_kv = kv_bytes(shape, dt, cands, jpos)
        else:
            jpos = judge.image_tokens + JUDGE_QUESTION_TOKENS + run.clause_tokens
            judge_act = forward_bytes(judge.hidden, judge.intermediate, judge.heads, cands, jpos, dt)
            judge_kv = kv_bytes(judge, dt, cands, jpos)

    # (name, KV cache, activations, VQ decode, judging) of each moment of a run; the VQ decoder and the judging
    # calls run after each other, so each moment holds one of them
    phases = [("the prompt's prefill", 0, first, 0, 0),
              ("decoding the last row", full + grow, step, 0, 0),
              ("the final decode", full, 0, vq, 0),
              ("the final pick", full, 0, 0, judge_act)]
    if gridar:
        phases += [("a band's previews", at_band, 0, vq, 0),
                   ("judging a band", at_band, 0, 0, judge_kv + judge_act)]
        if run.reformulate:
            phases.append(("prefilling the layout rows", at_band + kv_bytes(shape, dt, cands, prompt + band),
                           layout, 0, 0))
        if run.verify_by == "rollout":      # the band's cache stays while a copy of it is completed and scored
            phases += [("a rollout's decode", at_band + full + grow, step, 0, 0),
                       ("a rollout's decode to pixels", at_band + full, 0, vq, 0),
                       ("a rollout's scoring", at_band + full, 0, 0, judge_act)]
    name_, kv, acts, vq_p, judging = max(phases, key=lambda p: sum(p[1:]))
    margin = MARGIN_FIXED + int(MARGIN_SHARE * (kv + acts + vq_p + judging))
    return Plan(weights, kv, acts, vq_p, judging, margin, shape, run, name, judge, positions, name_,
                {p[0]: sum(p[1:]) for p in phases}, None if vq_dtype is None else str(vq_dt).replace("torch.", ""))


# -- the device -------------------------------------------------------------------------------------------------

def free_memory(device: torch.device | str) -> int | None:
    """Bytes a run may still allocate on `device`: on CUDA the driver's free memory plus what torch's allocator
    holds unused; on the CPU the available RAM (/proc/meminfo MemAvailable); None where it cannot be known."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    if dev.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


def device_words(device: torch.device | str) -> str:
    return "the GPU" if torch.device(device).type == "cuda" else "the CPU's memory" if torch.device(
        device).type == "cpu" else str(device)


def refusal(p: Plan, free: int, device: torch.device | str, weights_loaded: bool = True) -> str:
    """The one-line message for a run that does not fit."""
    r = p.run
    head = (f"this run needs about {gb(p.need(weights_loaded))} on {device_words(device)} beside the loaded model "
            if weights_loaded else f"this run needs about {gb(p.total)} on {device_words(device)} with the model "
            "loaded ")
    msg = head + f"({p.summary(weights=not weights_loaded)}), but {gb(free)} is free"
    if r.jobs > 1:
        k = p.largest_batch(free, weights_loaded)
        if k == 1:
            return msg + f"; one prompt at a time fits at N = {r.n}: use a batch of 1"
        return msg + (f"; at most {k} prompts of N = {r.n} fit together: use a smaller batch"
                      if k else f"; not even one prompt at N = {r.n} fits: use a smaller N")
    n = p.largest_n(free, weights_loaded)
    if r.method == "single" or n == 0:
        what = (f"not even N = {GROUP}, GridAR's smallest, fits" if r.method == "gridar" else
                "not even one candidate fits")
        return msg + f"; {what}: close other programs using this memory, or use another device"
    group = f" (GridAR works in groups of {GROUP})" if r.method == "gridar" else ""
    return msg + f"; the largest N that fits is {n}{group}: use N = {n}, or close other programs using this memory"


# -- a search ---------------------------------------------------------------------------------------------------

def plan_search(search) -> Plan | None:
    """The plan of a `Search` as built (its backend's model and dtype, its requests, its roles); None when the
    backend is not a loaded Janus model (a test's stand-in)."""
    return _plan_loaded(search.b, search.roles, search.req, search.n, len(search.jobs),
                        max(len(ids) for ids in search.prompt_ids))


def _plan_loaded(backend, roles, req, n: int, jobs: int, prompt_tokens: int) -> Plan | None:
    model = getattr(backend, "model", None)
    if model is None or not hasattr(getattr(model, "model", None), "vqmodel"):
        return None
    try:        # the cache and the forwards are in the language model's dtype (the VQ may run in another)
        dtype = next(model.model.language_model.parameters()).dtype
    except (StopIteration, AttributeError):
        return None
    judge = None
    rmodel = getattr(roles, "model", None)
    if rmodel is not None and rmodel is not model and hasattr(rmodel, "parameters"):
        cfg = rmodel.config.to_dict() if hasattr(rmodel.config, "to_dict") else {}
        wbytes = sum(p.numel() * p.element_size() for p in rmodel.parameters())
        judge = judge_shape(cfg, wbytes, "judging model", _judge_image_tokens(backend, roles))
    vq = getattr(model.model.vqmodel, "dtype", None)
    shape = _loaded_shape(model)
    run = RunShape(method=req.method, n=n, jobs=jobs, prompt_tokens=prompt_tokens, reformulate=req.reformulate,
                   strategy=req.strategy, verify_by=req.verify_by,
                   verified_until=max([s.until for s in req.schedule if s.verify and s.until < 1.0] or [0.0]),
                   clause_tokens=int(getattr(roles, "max_new_tokens", 24) or 24), judge=roles is not None,
                   edit=req.edit is not None)
    return plan(shape, dtype, run, judge, vq if isinstance(vq, torch.dtype) else None)


def _judge_image_tokens(backend, roles) -> int:
    """Positions one of the generator's images takes in a separate judge's questions, from the judge folder's
    processor configuration (`engine.judges`); the stated guess where the folder is not known."""
    from .judges import DEFAULT_IMAGE_TOKENS, judge_image_tokens
    folder = getattr(roles, "folder", None) or getattr(getattr(getattr(roles, "b", None), "info", None), "folder",
                                                        None)
    size = getattr(getattr(backend, "info", None), "image_size", None)
    if folder is None or not isinstance(size, int) or not Path(folder).is_dir():
        return DEFAULT_IMAGE_TOKENS
    return judge_image_tokens(Path(folder), size)


def _loaded_shape(model) -> ModelShape:
    """The shape of a loaded model, its parameters counted on it (a walk over a few hundred tensors at 7B: cheap
    enough to do per run, and never stale after a dtype change)."""
    return model_shape(model.config, model)


def check_search(search) -> Plan | None:
    """Refuse (`DoesNotFit`) a search whose plan does not fit the free memory of its backend's device, before any
    work; returns the plan (None when it cannot be made or the free memory cannot be known)."""
    p = plan_search(search)
    if p is None:
        return None
    free = free_memory(search.b.device)
    if free is not None and not p.fits(free, weights_loaded=True):
        raise DoesNotFit(refusal(p, free, search.b.device))
    return p


def plan_request(backend, roles, request) -> Plan | None:
    """The plan of a request (or a batch of requests with the same settings) before anything runs, e.g. for the
    studio's estimate beside N or a benchmark's batch size: nothing is built but the prompts' token ids, so it is
    cheap enough for the GUI thread. A prompt the model cannot read yet (an empty or half-typed one) is planned at
    its length in characters. None when the backend is not a loaded Janus model."""
    from .errors import PromptNotUnderstood
    reqs = [request] if not isinstance(request, (list, tuple)) else list(request)
    if not reqs:
        raise ValueError("a plan needs at least one request")
    req = reqs[0]
    edit = req.edit is not None and getattr(backend, "edit_conditioned", False)

    def length(text: str) -> int:
        try:
            return len(backend.edit_prompt_ids(text) if edit else backend.prompt_ids(text))
        except (PromptNotUnderstood, ValueError):
            return len(text) + 32
    n = 1 if req.method == "single" else req.n
    return _plan_loaded(backend, roles, req, n, len(reqs), max(length(r.prompt) for r in reqs))


def largest_batch(backend, roles, request, most: int) -> int:
    """How many jobs of `request` (at most `most`) fit together beside the loaded model, for a benchmark's batch:
    `most` when the free memory cannot be known, at least 1 (a single job that does not fit is refused by the run
    itself, with its own message)."""
    p = plan_request(backend, roles, request)
    free = free_memory(backend.device)
    if p is None or free is None:
        return most
    return max(1, min(most, p.largest_batch(free, weights_loaded=True, most=most)))


def estimate_words(p: Plan, device: torch.device | str) -> str:
    """A short line for the studio beside N: what the run needs beside the loaded model and what is free."""
    free = free_memory(device)
    need = gb(p.need(weights_loaded=True))
    if free is None:
        return f"needs about {need}"
    return f"needs about {need} of {gb(free)} free" + ("" if p.fits(free, weights_loaded=True) else
                                                       ": too much, lower N")


def check_before_load(folder: str | Path, device: str = "auto", dtype: str = "auto",
                      judge: JudgeShape | None = None, **run) -> Plan | None:
    """Refuse (`DoesNotFit`) a run whose model and run together cannot fit what `device` has free, from the
    folder's config.json alone, before the weights load (a minute at 7B); `run`: `RunShape` fields (prompt_tokens
    is a guess before the tokenizer loads: say more rather than less); `judge`: a separate judging model
    (`engine.judges.judge_shape_for`), counted with its weights and its questions' batch. Returns the plan; None when
    the free memory cannot be known. A folder that cannot be read is a `ModelLoadError`, as loading it would be."""
    from .backend import resolve_device, resolve_precision
    from .models import check_model_folder
    cfg = check_model_folder(folder)
    dev = resolve_device(device)
    prec = resolve_precision(dtype, dev, cfg)         # what the load will pick ("auto" on a CPU reads the size)
    p = plan(cfg, prec.lm, judge=judge, vq_dtype=prec.pixels if prec.mixed else None, **run)
    free = free_memory(dev)
    if free is None:
        return None
    if not p.fits(free):
        raise DoesNotFit(refusal(p, free, dev, weights_loaded=False))
    return p
