"""One command that trains the demo model, stage by stage, resumable: `python -m gridar_desktop.training.train_demo`.

Stages (each skipped when its output exists, each resumable from its own checkpoint in the work folder):
  vq    the VQ tokenizer on shapes renders                      -> work/vq_final.pt
  gen   the generation path on prompt -> image tokens            -> work/gen_final.pt
  pack  assemble a `save_pretrained` folder (fp16 weights)       -> OUT (default resources/models/shapes-demo)
  und   (run on its own: --stage und) teach the understanding path of the model in OUT to verify, score and
        reformulate, replaying generation batches, and write it back to OUT
  editgen (on its own, after und) teach the model in OUT edit-conditioned generation (`training.edit_gen`),
        replaying generation and understanding, write it back to OUT and recalibrate the pruning thresholds
  editvalue (on its own, after editgen) learn the edit value head of the model in OUT from its own finished
        edits (`training.edit_value`); the weights do not change
Stages that change the weights (und, editgen) delete the value head learned for the earlier weights.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .demo_config import janus_config

log = logging.getLogger("gridar.train")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="build/demo-train", help="checkpoint folder (resumable)")
    ap.add_argument("--out", default="resources/models/shapes-demo", help="final model folder")
    ap.add_argument("--stage", default="all", choices=["all", "vq", "gen", "pack", "und", "editgen", "editvalue"])
    ap.add_argument("--und-steps", type=int, default=1700)
    ap.add_argument("--und-lr", type=float, default=1e-3, help="peak rate of the vision path (the LM gets 0.6x)")
    ap.add_argument("--und-warmup", type=int, default=200)
    ap.add_argument("--und-mix", default="first", choices=["first", "fine-tune", "robust", "engine-views", "edit"],
                    help="examples: the first mix (score: a third perturbed uniformly, a third another prompt; "
                         "partial views of 2 or 4 rows) or the fine-tuning mix (score: 45%% perturbed with errors "
                         "as the generator makes them, mostly counts off by one, 20%% another prompt; 40%% of "
                         "partial views cut at any row); robust: the fine-tuning mix with generation-like blur, specks "
                         "and noise on half of the images; engine-views: robust, and 75%% of partial views made as the "
                         "engine makes them (codes below the cut replaced by the empty-canvas code, then decoded); "
                         "edit: robust with 30%% engine views and a quarter of the examples partial edits asked "
                         "with the edit question")
    ap.add_argument("--und-engine-views", type=float, default=None,
                    help="share of partial views made as the engine makes them (overrides the mix's share)")
    ap.add_argument("--und-cut-objects", type=float, default=None,
                    help="share of verify views given an object started just above the cut (overrides the mix's)")
    ap.add_argument("--und-replay", type=int, default=24, help="generation rows replayed per step")
    ap.add_argument("--und-replay-three", type=float, default=0.0,
                    help="share of replayed rows with three-group prompts")
    ap.add_argument("--und-gen-weight", type=float, default=0.5, help="weight of the replayed generation loss")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--editgen-steps", type=int, default=800)
    ap.add_argument("--editgen-edits", type=int, default=16_000, help="edits sampled and encoded for editgen")
    ap.add_argument("--editgen-lr", type=float, default=3e-4)
    ap.add_argument("--editgen-replay", type=int, default=32, help="generation rows replayed per editgen step")
    ap.add_argument("--editgen-gen-weight", type=float, default=1.0, help="weight of the replayed generation loss")
    ap.add_argument("--editgen-three-groups", type=float, default=0.5,
                    help="share of replayed rows with three-group prompts (with --editgen-favour-counts: counted "
                         "or three-group prompts)")
    ap.add_argument("--editgen-favour-counts", action=argparse.BooleanOptionalAction, default=True,
                    help="favour prompts with a count of two or more as well (the shipped run; without it, the "
                         "first runs halved counting)")
    ap.add_argument("--editvalue-edits", type=int, default=2400,
                    help="edits run as GridAR (N = 4, nothing pruned) to learn the edit value head from")
    ap.add_argument("--vq-steps", type=int, default=1400)
    ap.add_argument("--gen-steps", type=int, default=2600)
    ap.add_argument("--gen-scenes", type=int, default=80_000, help="scenes rendered and VQ-encoded for stage gen")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    cfg = janus_config()
    t0 = time.time()
    if args.stage in ("all", "vq") and not (work / "vq_final.pt").exists():
        from .vq import train_vq
        train_vq(cfg, work, steps=args.vq_steps, seed=args.seed)
        log.info("vq stage done after %.0f s", time.time() - t0)
    if args.stage in ("all", "gen") and not (work / "gen_final.pt").exists():
        from .gen import train_gen
        train_gen(cfg, work, steps=args.gen_steps, seed=args.seed, n_scenes=args.gen_scenes)
        log.info("gen stage done after %.0f s", time.time() - t0)
    if args.stage == "und":
        _understanding(cfg, work, Path(args.out), args)
        return 0
    if args.stage == "editgen":
        _edit_generation(work, Path(args.out), args)
        return 0
    if args.stage == "editvalue":
        from .edit_value import train_edit_value
        train_edit_value(args.out, work, edits=args.editvalue_edits, seed=args.seed, threads=args.threads)
        return 0
    if args.stage in ("all", "pack"):
        from .gen import pack
        pack(cfg, work, args.out)
        log.info("packed %s", args.out)
    return 0


def _understanding(cfg, work: Path, out: Path, args) -> None:
    """Train the shipped model's understanding path in place (resumable through work/und_ckpt.pt)."""
    from transformers import JanusForConditionalGeneration

    from .demo_config import build_processor, save_folder
    from .gen import build_dataset
    from .understand import EDIT_MIX, ENGINE_VIEW_MIX, FINE_TUNE_MIX, FIRST_MIX, ROBUST_MIX, train_understanding
    work.mkdir(parents=True, exist_ok=True)
    model = JanusForConditionalGeneration.from_pretrained(out, local_files_only=True, dtype=torch.float32)
    data = build_dataset(model.model.vqmodel, 20_000, args.seed + 5, work / "und_gen_data.pt")
    mix = {"first": FIRST_MIX, "fine-tune": FINE_TUNE_MIX, "robust": ROBUST_MIX,
           "engine-views": ENGINE_VIEW_MIX, "edit": EDIT_MIX}[args.und_mix]
    if args.und_engine_views is not None:
        mix = replace(mix, partial_decode=args.und_engine_views)
    if args.und_cut_objects is not None:
        mix = replace(mix, cut_objects=args.und_cut_objects)
    train_understanding(model, data, work, steps=args.und_steps, seed=args.seed, lr=args.und_lr,
                        warmup=args.und_warmup, mix=mix, replay=args.und_replay,
                        replay_three_groups=args.und_replay_three, gen_weight=args.und_gen_weight)
    save_folder(model.to(torch.float16).eval(), build_processor(), out)
    record_understanding(out, args.und_steps, args.seed, {
        "lr": args.und_lr, "warmup": args.und_warmup, "mix": args.und_mix, "engine_views": mix.partial_decode,
        "replay_batch": args.und_replay, "replay_three_groups": args.und_replay_three,
        "gen_weight": args.und_gen_weight, "edit_views": mix.edit_views, "cut_objects": mix.cut_objects})
    # whether the roles may ask partial edits the edit question (`engine.janus_roles`): only weights just trained on
    # it; a later run without edit views drops the flag and the edit threshold calibrated for older weights
    import json

    from ..io.atomic import atomic_write_text
    meta = json.loads((out / "gridar.json").read_text())
    meta.pop("verify_threshold_edit", None)
    meta.pop("edit_verify", None)
    drop_value_head(out, meta)
    if mix.edit_views:
        meta["edit_verify"] = True
    atomic_write_text(out / "gridar.json", json.dumps(meta, indent=1))
    # the pruning threshold belongs to these weights: calibrate it on held-out views (`calibrate`)
    from .calibrate import calibrate, write_threshold
    rec = calibrate(out)
    write_threshold(out, rec)
    log.info("verify threshold %.3f (%s)", rec["value"], rec["rule"])
    if mix.edit_views:
        from .calibrate import calibrate_edit
        rec = calibrate_edit(out)
        write_threshold(out, rec, "verify_threshold_edit")
        log.info("edit verify threshold %.3f", rec["value"])


def _edit_generation(work: Path, out: Path, args) -> None:
    """Teach the model in OUT edit-conditioned generation in place (resumable through work/editgen_ckpt.pt)."""
    import json

    from transformers import JanusForConditionalGeneration

    from ..engine.edit import HOLE_FILL
    from ..io.atomic import atomic_write_text
    from .calibrate import calibrate, calibrate_edit, write_threshold
    from .demo_config import build_processor, save_folder
    from .edit_gen import GROW, build_edit_dataset, train_edit_generation
    from .gen import build_dataset
    work.mkdir(parents=True, exist_ok=True)
    model = JanusForConditionalGeneration.from_pretrained(out, local_files_only=True, dtype=torch.float32)
    gen_data = build_dataset(model.model.vqmodel, 20_000, args.seed + 5, work / "und_gen_data.pt")
    edit_data = build_edit_dataset(model.model.vqmodel, args.editgen_edits, work / "edit_data.pt")
    train_edit_generation(model, gen_data, edit_data, work, steps=args.editgen_steps, lr=args.editgen_lr,
                          seed=args.seed, replay=args.editgen_replay, gen_weight=args.editgen_gen_weight,
                          three_groups=args.editgen_three_groups, favour_counts=args.editgen_favour_counts)
    save_folder(model.to(torch.float16).eval(), build_processor(), out)
    meta = json.loads((out / "gridar.json").read_text())
    drop_value_head(out, meta)
    # what the engine reads to condition an edit on its source (`engine.backend.JanusBackend.edit_conditioned`)
    meta["edit_generation"] = {"format": "holed-source", "hole_fill": list(HOLE_FILL), "words": "target :"}
    meta.setdefault("training", {})["editgen"] = {
        "steps": args.editgen_steps, "batch": 24, "replay_batch": args.editgen_replay, "und_batch": 16,
        "gen_weight": args.editgen_gen_weight, "replay_three_groups": args.editgen_three_groups,
        "replay_favours": "counted or three-group prompts" if args.editgen_favour_counts else "three-group prompts",
        "lr": args.editgen_lr,
        "edits": args.editgen_edits, "seed": args.seed, "mask_grow_px": list(GROW),
        "frozen": "vision encoder and aligner", "und_mix": "edit"}
    atomic_write_text(out / "gridar.json", json.dumps(meta, indent=1))
    # the language model moved: the thresholds calibrated for the earlier weights no longer hold
    rec = calibrate(out)
    write_threshold(out, rec)
    log.info("verify threshold %.3f (%s)", rec["value"], rec["rule"])
    if meta.get("edit_verify"):             # weights that know the edit question: its threshold moved too
        rec = calibrate_edit(out)
        write_threshold(out, rec, "verify_threshold_edit")
        log.info("edit verify threshold %.3f", rec["value"])
    elif "verify_threshold_edit" in meta:
        meta.pop("verify_threshold_edit")
        atomic_write_text(out / "gridar.json", json.dumps(meta, indent=1))


def drop_value_head(out: Path, meta: dict) -> None:
    """The edit value head reads these weights' hidden states: new weights make it meaningless. Removes the head
    file and the "edit_value" record from `meta` (the caller writes meta)."""
    from .edit_value import HEAD_FILE
    meta.pop("edit_value", None)
    (Path(out) / HEAD_FILE).unlink(missing_ok=True)


def record_understanding(out: Path, steps: int, seed: int, options: dict | None = None) -> None:
    """Note the understanding stage in the folder's gridar.json (the model card reads it)."""
    import json
    from collections import Counter

    from .understand import TASKS
    meta_path = Path(out) / "gridar.json"
    meta = json.loads(meta_path.read_text())
    training = meta.setdefault("training", {})
    if "und" in training:          # an earlier und stage: keep its record, numbered
        n = sum(k.startswith("und") for k in training)
        training[f"und{n}"] = training.pop("und")
    training["und"] = {
        "steps": steps, "batch": 48, "replay_batch": 24, "seed": seed,
        "tasks": ", ".join(f"{t} {n}/{len(TASKS)}" for t, n in Counter(TASKS).items()) + (
            f" of the examples that are not partial edits (edit question: {options['edit_views']:.0%})"
            if (options or {}).get("edit_views") else ""),
        "probe": "training-only patch tagging of the image features (centre and cover), weight 0.5",
        "features": "visible rows only for partial views" + (
            "; all for the edit question" if (options or {}).get("edit_views") else ""),
        "visibility": "an object shows in a partial view only with at least 0.8% of the image above the cut",
        **(options or {})}
    from ..io.atomic import atomic_write_text
    atomic_write_text(meta_path, json.dumps(meta, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
