#!/usr/bin/env bash
# GridAR Desktop offline installer. Run from inside the extracted bundle:
#
#     ./install.sh [PREFIX]        PREFIX defaults to ${XDG_DATA_HOME:-~/.local/share}/gridar-desktop
#
# Never touches the network: pip installs only from the bundle's wheels/ (--no-index). Steps: check every file
# against MANIFEST.json, find python3 >= 3.10, create (or reuse) PREFIX/venv, install the wheels, copy the demo
# model, write the launchers PREFIX/bin/gridar-desktop and PREFIX/bin/gridar, the icon, a menu entry and
# PREFIX/uninstall.sh. Running it again upgrades in place.
#
# Environment: GRIDAR_PYTHON (the python3 to build the venv with), GRIDAR_APPLICATIONS_DIR (where the .desktop
# entry goes; default ${XDG_DATA_HOME:-~/.local/share}/applications), GRIDAR_CHECK_ONLY=1 (only check the system
# libraries the studio's window needs, then exit: 0 all there, 1 some missing), GRIDAR_SKIP_DESKTOP_CHECK=1
# (install even though they are missing: the `gridar` command line needs none of them).
set -euo pipefail

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# The bundle is wherever this script is, whatever the caller's working directory.
here=$(cd "$(dirname "$0")" && pwd)
data_home=${XDG_DATA_HOME:-${HOME:?HOME is not set}/.local/share}
prefix=${1:-$data_home/gridar-desktop}
apps_dir=${GRIDAR_APPLICATIONS_DIR:-$data_home/applications}
case $prefix in /*) ;; *) prefix=$PWD/$prefix ;; esac
# These characters would need escaping in the desktop entry's Exec= line; refuse them rather than write a broken one.
case $prefix in *[\"\`\$\\%]* | *$'\n'*) die "PREFIX must not contain \" \` \$ \\ % or a newline: $prefix" ;; esac

[[ -f $here/MANIFEST.json ]] || die "no MANIFEST.json next to install.sh ($here): run it from the extracted bundle"
# The Python the bundled wheels were fetched for; read with sed because no Python has been chosen yet.
bundle_py=$(sed -n 's/^ *"python": *"\([0-9.]*\)".*/\1/p' "$here/MANIFEST.json" | head -n 1)

python_ok() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }

find_python() {
    if [[ -n ${GRIDAR_PYTHON:-} ]]; then
        python_ok "$GRIDAR_PYTHON" || die "GRIDAR_PYTHON=$GRIDAR_PYTHON is not a Python >= 3.10 with the venv module"
        printf '%s\n' "$GRIDAR_PYTHON"
        return
    fi
    local c
    # Prefer the exact version the wheels were built for: torch and friends ship one wheel per Python version.
    for c in ${bundle_py:+python$bundle_py} python3; do
        if command -v "$c" >/dev/null 2>&1 && python_ok "$c"; then command -v "$c"; return; fi
    done
    die "no python3 >= 3.10 with the venv module found (the bundled wheels are for Python ${bundle_py:-3})." \
        "Install it (e.g. apt install python3 python3-venv) or set GRIDAR_PYTHON=/path/to/python3"
}
py=$(find_python)

# sha256 with python's hashlib: sha256sum is not on every workstation, python3 is needed anyway.
echo "checking the bundle against MANIFEST.json ..."
"$py" - "$here" <<'PY' || exit 1
import hashlib, json, sys
from pathlib import Path

root = Path(sys.argv[1])
try:
    files = json.loads((root / "MANIFEST.json").read_text(encoding="utf-8"))["files"]
except (OSError, ValueError, KeyError) as e:
    sys.exit(f"install.sh: MANIFEST.json is unreadable ({e}); copy the bundle again")
bad = []
for rel, want in files.items():
    h = hashlib.sha256()
    try:
        with open(root / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # the torch wheel is far too big to read at once
                h.update(chunk)
    except OSError:
        bad.append(f"{rel} (missing)")
        continue
    if h.hexdigest() != want:
        bad.append(f"{rel} (corrupt: checksum mismatch)")
if bad:
    sys.exit("install.sh: the bundle is damaged; copy it again. Bad files:\n  " + "\n  ".join(bad))
print(f"  {len(files)} files OK")
PY

# The studio's window needs Qt's system libraries (X11/xcb, OpenGL, fonts); a desktop missing one gets only Qt's
# abort at start, so name the packages now. The list lives in the app (gridar_desktop/launcher.py), read here from
# the bundled wheel with the Python that will run the app, so the installer and the launcher never disagree.
app_wheels=("$here"/wheels/gridar_desktop-*.whl)
[[ -f ${app_wheels[0]} ]] || die "no gridar_desktop wheel in $here/wheels"
check_desktop_libraries() {
    local missing
    if ! missing=$(PYTHONPATH="${app_wheels[0]}${PYTHONPATH:+:$PYTHONPATH}" "$py" -m gridar_desktop.launcher \
            --missing-packages); then
        [[ -n $missing ]] || die "could not check the system libraries with $py (see its message above)"
        printf '%s\n' "install.sh: the studio's window needs system libraries that are missing. Install them with:" \
            "    sudo apt install $missing" \
            "(Debian/Ubuntu package names; on other systems install the libraries of the same names.)" >&2
        return 1
    fi
    echo "  the system libraries for the studio's window are all present"
}
echo "checking the system libraries the studio needs ..."
if [[ ${GRIDAR_CHECK_ONLY:-} == 1 ]]; then
    check_desktop_libraries && exit 0
    exit 1
fi
if [[ ${GRIDAR_SKIP_DESKTOP_CHECK:-} == 1 ]]; then
    echo "  skipped (GRIDAR_SKIP_DESKTOP_CHECK=1): the command line works without them, the studio may not start"
elif ! check_desktop_libraries; then
    die "install those packages and run install.sh again, or set GRIDAR_SKIP_DESKTOP_CHECK=1 to install anyway" \
        "(the gridar command line works without them)"
fi

venv=$prefix/venv
marker=$prefix/.gridar-desktop-install
mkdir -p "$prefix"
if [[ -x $venv/bin/python ]]; then
    echo "reusing the Python environment $venv"
else
    echo "creating the Python environment $venv"
    "$py" -m venv "$venv" || die "could not create $venv (on Debian/Ubuntu: apt install python3-venv)"
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input install -q --no-index --find-links "$here/wheels")
upgrade=()
if [[ -f $marker ]]; then upgrade=(--upgrade); fi  # a reinstall: take newer wheels from this bundle
echo "installing GridAR Desktop from the bundled wheels (offline) ..."
venv_py=$("$venv/bin/python" -c 'import sys; print(*sys.version_info[:2], sep=".")')
# a bundle built with --with cluster names its extras in EXTRAS (e.g. "cluster"): install them with the app
req=gridar-desktop
if [[ -s $here/EXTRAS ]]; then
    extras=$(tr -cd 'a-z0-9,_-' <"$here/EXTRAS")
    [[ -n $extras ]] && req="gridar-desktop[$extras]"
fi
"${pip[@]}" ${upgrade[@]+"${upgrade[@]}"} "$req" \
    || die "pip could not install from $here/wheels (see pip's message above). The wheels are for Python" \
           "${bundle_py:-?}; $venv has Python $venv_py"
# Then (re)install the app's own wheel into this venv, whatever pip believes is already there: a rebuilt bundle of
# the same version must replace the files, and a copy visible on sys.path from elsewhere must not stand in for it.
"${pip[@]}" --no-deps --force-reinstall "${app_wheels[0]}" || die "pip could not install ${app_wheels[0]}"
[[ -x $venv/bin/gridar && -x $venv/bin/gridar-desktop ]] || die "the install did not create $venv/bin/gridar-desktop"

# torchvision (a Qwen2.5-VL judge's processor wants it): the bundle holds the build paired with its torch, installed
# without dependencies and then imported beside torch. One that does not load is removed again: a broken torchvision
# breaks transformers' image processors, while without one Qwen2-VL-class judges still load (PIL image processor).
tv_wheels=("$here"/wheels/torchvision-*.whl)
if [[ -f ${tv_wheels[0]} ]]; then
    echo "installing torchvision (the build paired with the bundled torch) ..."
    "${pip[@]}" --no-deps --force-reinstall "${tv_wheels[0]}" || die "pip could not install ${tv_wheels[0]}"
    if ! "$venv/bin/python" -c 'import torchvision' >/dev/null 2>&1; then
        "$venv/bin/python" -m pip --disable-pip-version-check uninstall -q -y torchvision >/dev/null 2>&1 || true
        echo "  warning: $(basename "${tv_wheels[0]}") does not load beside the installed torch, so it was removed;" \
            "Qwen2-VL-class judges load without it" >&2
    fi
fi

# Models: copy under a temporary name, then swap, so an interrupted copy never looks like a complete model.
models=()
mkdir -p "$prefix/models"
for m in "$here"/models/*/; do
    name=$(basename "$m")
    rm -rf "$prefix/models/.$name.new"
    cp -R "$m" "$prefix/models/.$name.new"
    rm -rf "${prefix:?}/models/$name"
    mv "$prefix/models/.$name.new" "$prefix/models/$name"
    models+=("$name")
done
[[ -f $prefix/models/shapes-demo/config.json ]] || die "the demo model was not copied to $prefix/models/shapes-demo"

# Single-quote a string for sh (the paths are baked into the generated scripts).
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

write_launcher() {  # NAME: PREFIX/bin/NAME runs the venv's NAME with the environment the app needs
    local tmp=$prefix/bin/.$1.new
    cat >"$tmp" <<EOF
#!/bin/sh
# Written by GridAR Desktop's install.sh. The demo model lives next to the venv, not inside the package, and
# Hugging Face libraries stay offline (the app forces this too; exporting it covers child processes).
export GRIDAR_DEMO_MODEL=$(q "$prefix/models/shapes-demo")
export GRIDAR_ICON=$(q "$prefix/share/icons/gridar-desktop.png")
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
exec $(q "$venv/bin/$1") "\$@"
EOF
    chmod 755 "$tmp"
    mv -f "$tmp" "$prefix/bin/$1"
}
mkdir -p "$prefix/bin"
write_launcher gridar-desktop
write_launcher gridar

icons=$prefix/share/icons
mkdir -p "$icons"
cp "$here/resources/icons/gridar-desktop.png" "$here/resources/icons/gridar-desktop.svg" "$icons/"

# Menu entry: fill the template's placeholders; the template's own comments are notes for developers, dropped here.
entry=$(grep -v '^#' "$here/resources/gridar-desktop.desktop")
entry=${entry//@LAUNCHER@/"\"$prefix/bin/gridar-desktop\""}
entry=${entry//@ICON@/"$icons/gridar-desktop.png"}
mkdir -p "$apps_dir"
printf '%s\n' "$entry" >"$apps_dir/.gridar-desktop.desktop.new"
mv -f "$apps_dir/.gridar-desktop.desktop.new" "$apps_dir/gridar-desktop.desktop"
if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$apps_dir" || true; fi

# Uninstaller: removes exactly what was installed, then only folders left empty. Never `rm -rf PREFIX`: PREFIX may
# be a shared folder such as ~/.local.
{
    echo '#!/usr/bin/env bash'
    echo '# Written by GridAR Desktop install.sh: removes what it installed.'
    echo 'set -euo pipefail'
    echo "prefix=$(q "$prefix")"
    echo "rm -f $(q "$apps_dir/gridar-desktop.desktop")"
    echo 'rm -rf "$prefix/venv"'
    for name in "${models[@]}"; do echo "rm -rf \"\$prefix/models/\"$(q "$name")"; done
    echo 'rm -f "$prefix/bin/gridar-desktop" "$prefix/bin/gridar" "$prefix/share/icons/gridar-desktop.png" \'
    echo '    "$prefix/share/icons/gridar-desktop.svg" "$prefix/.gridar-desktop-install" "$prefix/uninstall.sh"'
    echo 'for d in "$prefix/models" "$prefix/bin" "$prefix/share/icons" "$prefix/share" "$prefix"; do'
    echo '    rmdir "$d" 2>/dev/null || true'
    echo 'done'
    echo 'echo "GridAR Desktop removed from $prefix"'
} >"$prefix/.uninstall.sh.new"
chmod 755 "$prefix/.uninstall.sh.new"
mv -f "$prefix/.uninstall.sh.new" "$prefix/uninstall.sh"

echo "installed to $prefix (uninstall: $prefix/uninstall.sh)" >"$marker"
echo "GridAR Desktop is installed in $prefix; uninstall with $prefix/uninstall.sh"
echo "Launch it from the applications menu (GridAR Desktop) or run: $prefix/bin/gridar-desktop"
