"""The offline installer: installer/build_installer.py makes a bundle, its install.sh installs it without network.

The bundle is built with --no-deps (the test has no network); the install goes into a venv made beforehand whose
.pth file points at this interpreter's site-packages, so torch, PySide6 and the rest resolve without a download
while the app itself is installed from the bundle's own wheel.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest
from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "installer" / "build_installer.py"
VERSION = __import__("gridar_desktop").__version__
NAME = f"gridar-desktop-{VERSION}-cpu"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="install.sh needs bash")


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = run([sys.executable, BUILD, "--no-deps", "--out", out])
    assert r.returncode == 0, r.stdout + r.stderr
    return out / NAME


def install_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDAR_", "PIP_"))}
    env.update(GRIDAR_PYTHON=sys.executable, GRIDAR_APPLICATIONS_DIR=str(tmp_path / "applications"),
               XDG_DATA_HOME=str(tmp_path / "xdg"),  # nothing may land in the real home, whatever the defaults
               PIP_CONFIG_FILE=os.devnull,
               # the install itself is under test, not this machine's X11 libraries (their check has its own tests)
               GRIDAR_SKIP_DESKTOP_CHECK="1")
    return env


def test_bundle_layout_and_manifest(bundle):
    for rel in ("install.sh", "README.txt", "MANIFEST.json", "models/shapes-demo/config.json",
                "models/shapes-demo/model.safetensors", "resources/icons/gridar-desktop.png",
                "resources/icons/gridar-desktop.svg", "resources/gridar-desktop.desktop"):
        assert (bundle / rel).is_file(), rel
    assert [p.name for p in (bundle / "wheels").iterdir()] == [f"gridar_desktop-{VERSION}-py3-none-any.whl"]
    assert os.access(bundle / "install.sh", os.X_OK)
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert manifest["name"] == "gridar-desktop" and manifest["version"] == VERSION and manifest["torch"] == "cpu"
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    files = tree(bundle)
    del files["MANIFEST.json"]  # it cannot list its own hash
    assert manifest["files"] == files
    assert tree(bundle / "models" / "shapes-demo") == tree(REPO / "resources" / "models" / "shapes-demo")
    readme = (bundle / "README.txt").read_text()
    assert "never needs the network" in readme
    from gridar_desktop.launcher import LINUX_DESKTOP_PACKAGES
    assert all(f" {pkg} " in readme.replace("\n", " ") for pkg in LINUX_DESKTOP_PACKAGES)
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "temporary build dirs left behind"


def test_tarball_extracts_to_the_same_tree(bundle, tmp_path):
    with tarfile.open(bundle.parent / f"{NAME}.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    assert [p.name for p in tmp_path.iterdir()] == [NAME]
    assert tree(tmp_path / NAME) == tree(bundle)
    assert os.access(tmp_path / NAME / "install.sh", os.X_OK)


def test_install_sh_parses(bundle):
    r = run(["bash", "-n", bundle / "install.sh"])
    assert r.returncode == 0, r.stderr


def test_build_without_wheels_says_what_is_missing(tmp_path):
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    out = tmp_path / "dist"
    r = run([sys.executable, BUILD, "--wheelhouse", empty, "--out", out])
    assert r.returncode == 1
    assert "no wheel found for torch==2.13.0" in r.stderr and f"Put the missing wheel into {empty}" in r.stderr
    assert "Traceback" not in r.stderr
    assert list(out.iterdir()) == [], "a failed build must leave nothing behind"


def test_rebuild_replaces_the_old_bundle(tmp_path):
    out = tmp_path / "dist"
    for _ in range(2):
        r = run([sys.executable, BUILD, "--no-deps", "--out", out])
        assert r.returncode == 0, r.stdout + r.stderr
        assert not (out / NAME / "stale.txt").exists(), "the old bundle must be replaced, not merged into"
        (out / NAME / "stale.txt").write_text("from the previous build")
    assert sorted(p.name for p in out.iterdir()) == [NAME, f"{NAME}.tar.gz"]


def make_prefix_venv(prefix: Path) -> Path:
    """PREFIX/venv that sees this interpreter's packages (torch, PySide6, pip) through a .pth file.

    --without-pip: a venv's own bundled pip/setuptools would shadow ours (torch needs a newer setuptools than the
    one ensurepip ships), and pip from this interpreter installs into the venv just as well."""
    venv = prefix / "venv"
    base = getattr(sys, "_base_executable", None) or sys.executable
    r = run([base, "-m", "venv", "--without-pip", venv])
    if r.returncode != 0:
        pytest.skip(f"python -m venv is unavailable here: {r.stderr.strip().splitlines()[-1:]}")
    vpy = venv / "bin" / "python"
    site = run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "_host_site_packages.pth").write_text("\n".join(ours) + "\n")
    return venv


def test_offline_install_launch_reinstall_uninstall(bundle, tmp_path):
    prefix = tmp_path / "prefix"
    venv = make_prefix_venv(prefix)
    env = install_env(tmp_path)
    r = run([bundle / "install.sh", prefix], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reusing the Python environment" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == f"Launch it from the applications menu (GridAR Desktop) or run: " \
                                                f"{prefix}/bin/gridar-desktop"

    # The app runs from the venv's own copy (installed from the bundle), through the launchers.
    where = run([venv / "bin" / "python", "-c", "import gridar_desktop; print(gridar_desktop.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    for launcher in ("gridar", "gridar-desktop"):
        h = run([prefix / "bin" / launcher, "--help"], env=env, cwd=tmp_path)
        assert h.returncode == 0, h.stdout + h.stderr
        assert "usage:" in h.stdout
    text = (prefix / "bin" / "gridar").read_text()
    m = re.search(r"^export GRIDAR_DEMO_MODEL='([^']+)'$", text, re.M)
    assert m and (Path(m.group(1)) / "config.json").is_file() and Path(m.group(1)).is_relative_to(prefix)
    assert "export HF_HUB_OFFLINE=1" in text and "export TRANSFORMERS_OFFLINE=1" in text
    m = re.search(r"^export GRIDAR_ICON='([^']+)'$", text, re.M)         # the window icon (app.main.app_icon_path)
    assert m and Image.open(m.group(1)).size == (256, 256)

    entry_path = tmp_path / "applications" / "gridar-desktop.desktop"
    entry = dict(line.split("=", 1) for line in entry_path.read_text().splitlines() if "=" in line)
    assert entry["Name"] == "GridAR Desktop" and entry["Terminal"] == "false" and entry["Type"] == "Application"
    assert "@" not in entry_path.read_text(), "a placeholder was left unfilled"
    assert entry["Exec"].endswith(" %f") and "image/png" in entry["MimeType"]     # "Open with" passes one image
    exe = Path(entry["Exec"][:-len(" %f")].strip('"'))
    assert exe == prefix / "bin" / "gridar-desktop" and os.access(exe, os.X_OK)
    icon = Path(entry["Icon"])
    assert icon.is_relative_to(prefix) and Image.open(icon).size == (256, 256)

    # Again: a reinstall over the existing install takes the --upgrade path and still works.
    r = run([bundle / "install.sh", prefix], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run([prefix / "bin" / "gridar", "--version"], env=env, cwd=tmp_path).returncode == 0

    r = run([prefix / "uninstall.sh"], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not entry_path.exists() and not prefix.exists()


def test_corrupt_bundle_file_is_named(bundle, tmp_path):
    copy = tmp_path / NAME
    shutil.copytree(bundle, copy)
    with open(copy / "models" / "shapes-demo" / "config.json", "ab") as f:
        f.write(b" ")
    prefix = tmp_path / "prefix"
    r = run([copy / "install.sh", prefix], env=install_env(tmp_path), cwd=tmp_path)
    assert r.returncode != 0
    assert "models/shapes-demo/config.json (corrupt" in r.stderr
    assert "Traceback" not in r.stderr
    assert not prefix.exists(), "nothing may be installed from a damaged bundle"


def test_icon_png_is_what_make_icon_draws(tmp_path):
    out = tmp_path / "icon.png"
    r = run([sys.executable, REPO / "installer" / "make_icon.py", "--out", out])
    assert r.returncode == 0, r.stderr
    shipped = Image.open(REPO / "resources" / "icons" / "gridar-desktop.png")
    assert shipped.size == (256, 256)
    assert ImageChops.difference(Image.open(out).convert("RGBA"), shipped.convert("RGBA")).getbbox() is None


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_installs_the_installers_cpu_torch_version():
    """The tested CPU torch version is written once (installer/build_installer.py) and `make` installs that one."""
    version = re.search(r'^TORCH_CPU_VERSION = "([^"]+)"', BUILD.read_text(), re.M).group(1)
    out = subprocess.run(["make", "-n", "-B", "install", "GRIDAR_TORCH=cpu", "VENV=/nonexistent-venv"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert f"pip install -q torch=={version} " in out + " "


# -- torchvision: the build paired with torch, kept only where it loads ---------------------------------------------

def fake_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel (what pip needs to install it: METADATA, WHEEL, RECORD)."""
    import zipfile
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{k},,\n" for k in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for k, v in {**files, f"{info}/RECORD": record}.items():
            z.writestr(k, v)
    return whl


def test_the_torchvision_pairs_are_the_engines_rule():
    from gridar_desktop.engine.judges import matching_torchvision
    text = BUILD.read_text()
    torch_v = re.search(r'^TORCH_CPU_VERSION = "([^"]+)"', text, re.M).group(1)
    vision_v = re.search(r'^TORCHVISION_CPU_VERSION = "([^"]+)"', text, re.M).group(1)
    assert matching_torchvision(torch_v) == vision_v == "0.28.0"


def test_build_without_a_torchvision_wheel_says_so(tmp_path):
    """The CPU bundle takes torchvision from torch's own index (here a wheelhouse): one that lacks it is named."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    fake_wheel(house, "torch", "2.13.0", {"torch/__init__.py": ""})
    out = tmp_path / "dist"
    r = run([sys.executable, BUILD, "--wheelhouse", house, "--out", out])
    assert r.returncode == 1
    assert "no wheel found for torchvision==0.28.0" in r.stderr and "Traceback" not in r.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("loads", [True, False])
def test_install_sh_keeps_torchvision_only_where_it_loads(bundle, tmp_path, loads):
    """A bundled torchvision is installed beside the app; one that does not import (a build for another torch,
    here a stand-in that fails as the CUDA wheel does beside the CPU torch) is removed again, with a warning."""
    sys.path.insert(0, str(BUILD.parent))
    try:
        import build_installer
    finally:
        sys.path.remove(str(BUILD.parent))
    copy = tmp_path / NAME
    shutil.copytree(bundle, copy)
    body = "" if loads else "raise RuntimeError('operator torchvision::nms does not exist')\n"
    fake_wheel(copy / "wheels", "torchvision", "0.28.0", {"torchvision/__init__.py": body})
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    (copy / "MANIFEST.json").unlink()
    build_installer.write_manifest(copy, manifest["version"], manifest["torch"], manifest["python"])
    prefix = tmp_path / "prefix"
    venv = make_prefix_venv(prefix)
    r = run([copy / "install.sh", prefix], env=install_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "installing torchvision" in r.stdout
    where = run([venv / "bin" / "python", "-c", "import importlib.util as u; s = u.find_spec('torchvision'); "
                 "print(s.origin if s else None)"], cwd=tmp_path).stdout.strip()
    if loads:
        assert Path(where).is_relative_to(venv) and "warning" not in r.stderr
    else:
        assert not where.startswith(str(venv)), where
        assert "torchvision-0.28.0-py3-none-any.whl does not load beside the installed torch" in r.stderr


# -- system libraries a Linux desktop needs (gridar_desktop/launcher.py holds the one list) --------------------------
from gridar_desktop import launcher  # noqa: E402

NO_ICCCM = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}


def fake_loader(missing: set[str]):
    return lambda soname: soname not in missing


def test_missing_xcb_libraries_are_named_as_packages():
    msg = launcher.desktop_problem({"DISPLAY": ":0"}, fake_loader(NO_ICCCM), platform="linux")
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1 " in msg
    assert "libxcb-cursor0" not in msg and "\n" not in msg
    assert launcher.desktop_problem({"DISPLAY": ":0"}, fake_loader(set()), platform="linux") is None


def test_every_platform_library_maps_into_the_one_package_list():
    everything = {**launcher.QT_BASE_LIBRARIES, **launcher.QT_XCB_LIBRARIES, **launcher.QT_WAYLAND_LIBRARIES}
    assert set(everything.values()) == set(launcher.LINUX_DESKTOP_PACKAGES)
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"} <= set(launcher.LINUX_DESKTOP_PACKAGES)
    all_missing = launcher.desktop_problem({"DISPLAY": ":0"}, fake_loader(set(everything)), platform="linux")
    wanted = [*launcher.QT_BASE_LIBRARIES.values(), *launcher.QT_XCB_LIBRARIES.values()]
    assert launcher.apt_command(wanted) in all_missing


def test_which_platform_qt_will_use_decides_what_is_checked():
    base_gone = fake_loader({"libEGL.so.1"})
    xcb_gone = fake_loader(NO_ICCCM)
    linux = {"platform": "linux"}
    # offscreen needs no desktop, but QtGui still links the base libraries
    assert launcher.desktop_problem({"QT_QPA_PLATFORM": "offscreen"}, xcb_gone, **linux) is None
    assert "sudo apt install libegl1 " in launcher.desktop_problem({"QT_QPA_PLATFORM": "offscreen"}, base_gone,
                                                                   **linux)
    # a Wayland session draws through Wayland first: missing X11 libraries do not stop it...
    wayland = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    assert launcher.desktop_problem(wayland, xcb_gone, **linux) is None
    # ...but when neither works, both sets are named
    msg = launcher.desktop_problem(wayland, fake_loader(NO_ICCCM | {"libwayland-cursor.so.0"}), **linux)
    assert "libwayland-cursor0" in msg and "libxcb-icccm4" in msg
    assert "no display" in launcher.desktop_problem({}, xcb_gone, **linux)
    assert launcher.desktop_problem({"DISPLAY": ":0"}, xcb_gone, platform="darwin") is None


def test_launcher_prints_the_packages_and_exits_2_before_starting_qt(monkeypatch, capsys):
    monkeypatch.setattr(launcher.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(launcher, "library_loads", fake_loader(NO_ICCCM))
    monkeypatch.setattr("gridar_desktop.app.main.main", lambda argv: pytest.fail("Qt must not be started"))
    assert launcher.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sudo apt install libxcb-icccm4 libxcb-keysyms1" in err


def fake_missing_site(tmp_path: Path, sonames: set[str]) -> Path:
    """A folder whose sitecustomize makes ctypes fail to load `sonames`, as on a desktop without them, and
    pretend every other library is there (this machine's own gaps must not change the answer)."""
    site = tmp_path / "fake_site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(
        "import ctypes\n"
        f"_missing = {sorted(sonames)!r}\n"
        "class _CDLL(ctypes.CDLL):\n"
        "    def __init__(self, name, *a, **k):\n"
        "        if name in _missing:\n"
        "            raise OSError(f'{name}: cannot open shared object file')\n"
        "        try:\n"
        "            super().__init__(name, *a, **k)\n"
        "        except OSError:\n"
        "            super().__init__('libc.so.6', *a, **k)\n"
        "ctypes.CDLL = _CDLL\n")
    return site


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check is for Linux desktops")
def test_main_py_says_which_packages_are_missing_instead_of_qts_abort(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":0", PYTHONPATH=str(fake_missing_site(tmp_path, NO_ICCCM)), GRIDAR_HOME=str(tmp_path / "h"))
    r = run([sys.executable, REPO / "main.py"], env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "Traceback" not in r.stderr
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in r.stderr


def test_install_sh_checks_the_desktop_libraries_first(bundle, tmp_path):
    env = install_env(tmp_path)
    del env["GRIDAR_SKIP_DESKTOP_CHECK"]
    env["PYTHONPATH"] = str(fake_missing_site(tmp_path, {"libxcb-cursor.so.0"}))
    r = run([bundle / "install.sh"], env={**env, "GRIDAR_CHECK_ONLY": "1"}, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "sudo apt install libxcb-cursor0\n" in r.stderr and "Traceback" not in r.stderr
    # a real install stops before touching anything, and says how to go on
    prefix = tmp_path / "prefix"
    r = run([bundle / "install.sh", prefix], env=env, cwd=tmp_path)
    assert r.returncode == 1 and "libxcb-cursor0" in r.stderr and "GRIDAR_SKIP_DESKTOP_CHECK=1" in r.stderr
    assert not prefix.exists() and not (tmp_path / "xdg").exists()
    # with every library there, the check passes
    env["PYTHONPATH"] = str(fake_missing_site(tmp_path / "none", set()))
    r = run([bundle / "install.sh"], env={**env, "GRIDAR_CHECK_ONLY": "1"}, cwd=tmp_path)
    assert r.returncode == 0 and "all present" in r.stdout, r.stdout + r.stderr


def test_selftest_and_help_need_no_x11_libraries(monkeypatch):
    monkeypatch.setattr(launcher.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(launcher, "library_loads", fake_loader(NO_ICCCM))
    started = []
    monkeypatch.setattr("gridar_desktop.app.main.main", lambda argv: started.append(argv) or 0)
    assert launcher.main(["--selftest"]) == 0 and launcher.main(["--help"]) == 0
    assert started == [["--selftest"], ["--help"]]
