import os

import pytest
from PIL import Image

from gridar_desktop.io.png import ImageFileError, load_image, read_metadata, save_png


def test_metadata_round_trip(tmp_path):
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    meta = {"settings": {"method": "gridar", "seed": 7, "n": 4}, "tree": {"stages": [1, 2]}}
    p = save_png(img, tmp_path / "a.png", "two red circles", meta)
    back = read_metadata(p)
    assert back["prompt"] == "two red circles" and back["tree"] == {"stages": [1, 2]}
    with Image.open(p) as im:
        assert im.info["parameters"].startswith("two red circles\n") and "Seed: 7" in im.info["parameters"]
    assert load_image(p).getpixel((0, 0)) == (1, 2, 3)


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "a.png"
    save_png(Image.new("RGB", (4, 4)), p, "first")

    class Exploding:
        def save(self, *a, **k):
            raise OSError("disk full")
    with pytest.raises(OSError):
        save_png(Exploding(), p, "second")
    assert read_metadata(p)["prompt"] == "first"
    assert os.listdir(tmp_path) == ["a.png"]          # no temporary file left behind


def test_unreadable_images(tmp_path):
    with pytest.raises(ImageFileError, match="no such file"):
        load_image(tmp_path / "none.png")
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    with pytest.raises(ImageFileError, match="not a readable image"):
        load_image(bad)
