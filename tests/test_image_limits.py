"""Images are bounded before they are decoded: what is not a regular file, what is too large, what needs converting,
what carries oversized text, and the output formats -o can name. Bad inputs go through the real entry points."""
import json
import os
import signal
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from gridar_desktop.cli import main
from gridar_desktop.io import png as png_io
from gridar_desktop.io.png import (MAX_PIXELS, ImageFileError, check_image, decode_png_bytes, load_image,
                                   read_metadata_checked, save_image, save_png)


# -- building files cheaply ----------------------------------------------------------------------------------------

def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(w: int, h: int, extra: bytes = b"") -> bytes:
    """A valid 1-bit greyscale PNG of w x h (all black) that is only a few KB: the IDAT is compressed zero rows."""
    comp, row, parts = zlib.compressobj(9), b"\0" * (1 + (w + 7) // 8), []
    for _ in range(h):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    return (png_io.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)) + extra
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def small_png_with(extra: bytes) -> bytes:
    """A 4x4 RGB PNG (colour (10, 20, 30)) with `extra` chunks before its image data."""
    raw = b"".join(b"\0" + bytes((10, 20, 30)) * 4 for _ in range(4))
    return (png_io.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)) + extra
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def ztxt(key: bytes, text_len: int) -> bytes:
    """A zTXt chunk that decompresses to `text_len` spaces (tiny on disk)."""
    return chunk(b"zTXt", key + b"\0\0" + zlib.compress(b" " * text_len, 9))


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (opening a FIFO blocks until a writer comes)."""
    def boom(*_):
        raise TimeoutError("blocked")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def make_bad(kind: str, tmp_path):
    p = tmp_path / f"{kind}.png"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "folder":
        p.mkdir()
    elif kind == "20000x20000":
        p.write_bytes(huge_png(20000, 20000))
    elif kind == "10000x10000":
        p.write_bytes(huge_png(10000, 10000))
    elif kind == "not an image":
        p.write_text("hello")
    return p


BAD = [("fifo", "FIFO"), ("folder", "folder"), ("20000x20000", "20000x20000 pixels"),
       ("10000x10000", "10000x10000 pixels"), ("not an image", "not a readable image")]


@pytest.mark.parametrize("kind,message", BAD)
def test_load_image_refuses(kind, message, tmp_path):
    p = make_bad(kind, tmp_path)
    with deadline(20), pytest.raises(ImageFileError) as e:
        load_image(p)
    assert message in str(e.value) and str(p) in str(e.value)
    if "pixels" in message:
        assert "limit" in str(e.value) and p.stat().st_size < 200_000        # refused from the header of a small file


@pytest.mark.parametrize("kind,message", BAD)
def test_check_image_refuses_the_same_from_the_header(kind, message, tmp_path):
    p = make_bad(kind, tmp_path)
    with deadline(20), pytest.raises(ImageFileError) as e:
        check_image(p)
    assert message in str(e.value) and str(p) in str(e.value)


def test_check_image_gives_the_size(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 20)).save(tmp_path / "a.jpg")
    assert check_image(tmp_path / "a.png") == check_image(tmp_path / "a.jpg") == (30, 20)


@pytest.mark.parametrize("kind,message", BAD)
def test_judge_refuses_with_one_line(kind, message, tmp_path, capsys):
    p = make_bad(kind, tmp_path)
    with deadline(20):
        rc = main(["judge", str(p), "a red circle"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("gridar judge:") and message in err


def test_the_limit_is_what_is_stated():
    side = int(MAX_PIXELS ** 0.5)
    assert side * side == MAX_PIXELS                  # the message says "(8192x8192)": keep it exact
    with pytest.raises(ImageFileError, match="limit"):
        decode_png_bytes(huge_png(side + 1, side), "x", max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("image_arg", ["image", "mask"])
def test_edit_refuses_a_bomb_before_loading_the_model(image_arg, tmp_path, capsys, monkeypatch):
    import gridar_desktop.cli as cli
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("the model was loaded before the images were checked"))
    good, bomb = tmp_path / "good.png", tmp_path / "bomb.png"
    Image.new("RGB", (64, 64), "white").save(good)
    bomb.write_bytes(huge_png(20000, 20000))
    image, mask = (bomb, good) if image_arg == "image" else (good, bomb)
    rc = main(["edit", str(image), str(mask), "a red circle", "--model", "demo", "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and "20000x20000" in err
    assert not (tmp_path / "out.png").exists()


def test_large_image_is_scaled_down_to_what_is_needed(tmp_path):
    p = tmp_path / "big.png"
    im = Image.new("P", (4000, 3000), 0)
    im.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    im.paste(1, (1000, 1000, 3000, 2000))                      # a red block in the middle
    im.save(p)
    out = load_image(p, max_side=64)
    assert out.mode == "RGB" and out.size == (85, 64)          # the shorter side is what a 64 px square needs
    assert out.getpixel((42, 32)) == (200, 0, 0) and out.getpixel((2, 2)) == (255, 255, 255)
    assert load_image(p, max_side=5000).size == (4000, 3000)  # never scaled up


def test_jpeg_is_decoded_at_reduced_scale(tmp_path):
    p = tmp_path / "big.jpg"
    Image.new("RGB", (2048, 2048), (0, 128, 255)).save(p, quality=90)
    out = load_image(p, max_side=64)
    assert out.size == (64, 64)
    assert np.abs(np.asarray(out, int) - (0, 128, 255)).max() < 8


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    grad = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)[None].repeat(4, 0)    # 0 .. 65535
    p = tmp_path / "g16.png"
    Image.fromarray(grad).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")                          # really a 16-bit file
    for mode in ("RGB", "L"):
        a = np.asarray(load_image(p, mode), int)
        row = a[0, :, 0] if mode == "RGB" else a[0]
        assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all()
        assert np.abs(row - np.arange(256)).max() <= 1


@pytest.mark.parametrize("mode,values,expected", [("I", [0, 32768, 65535], [0, 128, 255]),
                                                   ("F", [0.0, 0.5, 1.0], [0, 128, 255])])
def test_32_bit_and_float_greyscale(mode, values, expected, tmp_path):
    p = tmp_path / f"{mode}.tif"
    Image.fromarray(np.array([values], dtype=np.int32 if mode == "I" else np.float32), mode).save(p)
    assert list(np.asarray(load_image(p, "L"))[0]) == expected


def test_transparency_composites_on_white_for_pictures_and_black_for_masks(tmp_path):
    p = tmp_path / "rgba.png"
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 255)                                  # one opaque red pixel, the rest transparent black
    Image.fromarray(a, "RGBA").save(p)
    img = load_image(p)
    assert img.getpixel((0, 0)) == (255, 0, 0) and img.getpixel((1, 1)) == (255, 255, 255)
    mask = load_image(p, "L")
    assert mask.getpixel((1, 1)) == 0                          # transparent is unpainted: nothing to redraw
    pal = tmp_path / "p.png"
    im = Image.new("P", (2, 1), 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.save(pal, transparency=0)
    assert load_image(pal).getpixel((0, 0)) == (255, 255, 255) and load_image(pal).getpixel((1, 0)) == (0, 0, 255)


@pytest.mark.parametrize("extra", [
    pytest.param(chunk(b"tEXt", b"comment\0" + b"x" * (png_io.MAX_TEXT_BYTES + 10)), id="tEXt over the limit"),
    pytest.param(ztxt(b"comment", png_io.MAX_TEXT_BYTES + 10), id="zTXt bomb"),
    pytest.param(ztxt(b"gridar", 2 * png_io.MAX_TEXT_BYTES), id="gridar zTXt bomb"),
    pytest.param(b"".join(chunk(b"tEXt", b"c%d\0" % i + b"x" * (png_io.MAX_TEXT_BYTES - 100)) for i in range(5)),
                 id="text memory over the limit"),
])
def test_oversized_text_chunks_do_not_stop_the_image(extra, tmp_path, capsys):
    p = tmp_path / "t.png"
    p.write_bytes(small_png_with(extra))
    assert load_image(p).getpixel((0, 0)) == (10, 20, 30)
    meta, problems = read_metadata_checked(p)
    assert meta == {}
    if b"gridar" in extra[:20]:
        assert problems and "limit" in problems[0]
    assert main(["judge", str(p), "a red circle"]) == 0
    assert "Traceback" not in capsys.readouterr().err


# -- -o: the format follows the suffix ---------------------------------------------------------------------------

MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".webp": b"RIFF"}


@pytest.mark.parametrize("suffix", list(MAGIC))
def test_scene_output_format_follows_the_suffix(suffix, tmp_path):
    out = tmp_path / f"x{suffix}"
    assert main(["scene", "a red circle", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(MAGIC[suffix])
    if suffix == ".webp":
        assert data[8:12] == b"WEBP"
    with Image.open(out) as im:
        assert im.size == (64, 64)


@pytest.mark.parametrize("name", ["x.txt", "x", "x.gif"])
def test_unsupported_suffix_is_refused(name, tmp_path, capsys):
    out = tmp_path / name
    rc = main(["scene", "a red circle", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and ".png" in err and ".jpg" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []                   # nothing written, not even a temp file


def test_jpeg_and_webp_keep_the_parameters_but_say_the_tree_is_not_kept(tmp_path):
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    meta = {"settings": {"seed": 7, "n": 4}, "tree": {"stages": [1]}}
    path, notes = save_image(img, tmp_path / "a.png", "two red circles", meta)
    assert notes == [] and read_metadata_checked(path)[0]["tree"] == {"stages": [1]}
    for suffix in (".jpg", ".webp"):
        path, notes = save_image(img, tmp_path / f"a{suffix}", "two red circles", meta)
        assert len(notes) == 1 and "tree" in notes[0]
        with Image.open(path) as im:
            comment = im.getexif().get_ifd(0x8769).get(0x9286)          # UserComment, where A1111 puts it
        assert comment is not None and "two red circles" in bytes(comment)[8:].decode("utf-16-be")
    lossless = np.asarray(Image.open(tmp_path / "a.webp").convert("RGB"))
    assert (lossless == (1, 2, 3)).all()


def test_save_png_refuses_a_suffix_before_touching_the_disk(tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.jpg, \.jpeg, \.webp"):
        save_png(Image.new("RGB", (2, 2)), tmp_path / "x.bmp", "p")
    assert os.listdir(tmp_path) == []


def test_a_pnginfo_gridar_chunk_written_by_pil_reads_back(tmp_path):
    """Our own chunk reader agrees with PIL's writer for every text chunk kind."""
    for kw in ({}, {"zip": True}):
        info = PngImagePlugin.PngInfo()
        info.add_text("gridar", '{"prompt": "a red circle", "settings": {"seed": 3}}', **kw)
        p = tmp_path / f"k{len(kw)}.png"
        Image.new("RGB", (2, 2)).save(p, pnginfo=info)
        assert read_metadata_checked(p) == ({"prompt": "a red circle", "settings": {"seed": 3}}, [])
    info = PngImagePlugin.PngInfo()
    info.add_itxt("gridar", '{"prompt": "un cercle rouge é"}', zip=True)
    p = tmp_path / "i.png"
    Image.new("RGB", (2, 2)).save(p, pnginfo=info)
    assert read_metadata_checked(p) == ({"prompt": "un cercle rouge é"}, [])


def test_judge_reads_a_large_image_scaled_down_and_says_so(tmp_path, capsys):
    from gridar_desktop.cli import JUDGE_MAX_SIDE, main
    out = tmp_path / "big.png"
    prompt = "a red circle above a blue square"
    assert main(["scene", prompt, "--size", "2048", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["judge", str(out), prompt]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["strict"] == 1
    assert f"judged scaled down to {JUDGE_MAX_SIDE}x{JUDGE_MAX_SIDE}" in cap.err


def test_scene_to_jpeg_says_what_the_format_does_not_keep(tmp_path, capsys):
    from gridar_desktop.cli import main
    out = tmp_path / "scene.jpg"
    assert main(["scene", "a red circle", "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert cap.err.count("\n") == 1 and "gridar scene:" in cap.err
