"""The shapes world: a tiny, fully specified visual world used by the demo model and the benchmarks.

- `grammar`: the prompt language (parse prompts into a `SceneSpec`, format specs back to prompts).
- `scene`: seeded scene sampling and rendering of ground-truth images for a prompt.
- `judge`: an exact, programmatic judge (image -> objects -> strict / partial scores). It measures; it never chooses.
- `promptsets`: seeded benchmark prompt files by category.
"""
