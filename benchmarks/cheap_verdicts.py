"""Cheap verdicts (issue 29): can a head on the generator's own hidden state judge a partial candidate as well as
the verifier, for a small fraction of its cost? One JSON object on stdout.

    .venv/bin/python benchmarks/cheap_verdicts.py [--train-n 400] [--test-n 150] [--work build/cheap]

It trains the head (`gridar_desktop.training.cheap_verifier`: prompts on streams of their own, labels from the
model's own finished drawings, never the judge at choice time), writes it to <work>/cheap_head.safetensors and
reports, on held-out prompts, the AUROC of the head and of the current verifier against the finished candidate's
strict verdict and against the partial truth of the view, per verified band, and the FLOPs of one verdict of each.
Its place on the frontier: `benchmarks/frontier.py --methods cheap-gridar:4 --cheap-head <work>/cheap_head.safetensors`.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridar_desktop.training.cheap_verifier import main  # noqa: E402

if __name__ == "__main__":
    main()
