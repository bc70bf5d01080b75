"""`gridar-desktop` and `python main.py`: start the desktop studio.

Until the studio (gridar_desktop.app) lands, this runs a short headless demo of what exists: it renders a scene of
the shapes world, judges it and saves it, so that `make run` shows the pipeline working end to end.
"""
from __future__ import annotations

import importlib.util
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if importlib.util.find_spec("gridar_desktop.app") is not None:
        from .app.main import main as app_main
        return app_main(argv)
    return _headless_demo()


def _headless_demo() -> int:
    import json
    import tempfile
    from pathlib import Path

    from .io.png import save_png
    from .shapes.judge import judge
    from .shapes.scene import make_scene

    prompt = "a red circle above a blue square"
    img, _ = make_scene(prompt, seed=0)
    out = Path(tempfile.gettempdir()) / "gridar-demo.png"
    save_png(img, out, prompt, {"settings": {"method": "ground truth", "seed": 0}})
    print("The desktop studio is not built yet; headless demo of the shapes world:")
    print(f"  scene for {prompt!r} -> {out}")
    print("  judge:", json.dumps({k: v for k, v in judge(img, prompt).to_json().items() if k != "objects"}))
    return 0
