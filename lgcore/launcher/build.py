# SPDX-License-Identifier: GPL-2.0-only
"""Build the demo guest (guest/*.S) with GNU binutils, once, into a cache.

The flat image is cached under a key made of the sources, so a fresh clone,
an installed package and an edited source all get the right binary.  The
cache is ``$LGCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/lgcore``, else
``~/.cache/lgcore``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent / "guest"
SOURCES = ("lguest.inc", "kernel.S", "kernel.ld", "user.S", "user.ld")
TOOLS = ("as", "ld", "objcopy")


class GuestBuildError(RuntimeError):
    """The guest could not be built (tools missing or a build failure)."""


def cache_root() -> Path:
    env = os.environ.get("LGCORE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "lgcore" if xdg else Path.home() / ".cache" / "lgcore"


def _source_key() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        path = GUEST_DIR / name
        if not path.exists():
            raise GuestBuildError(f"guest source missing: {path} (was the package installed without its data files?)")
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestBuildError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")


def build_guest(force: bool = False) -> Path:
    """Return the path of the flat guest image, building it if needed."""
    key = _source_key()
    root = cache_root()
    image = root / f"guest-{key}" / "guest.bin"
    if image.exists() and not force:
        return image
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix="probe-", dir=root)
        os.rmdir(probe)
    except OSError:
        # a read-only home: build under the temp dir instead
        root = Path(tempfile.gettempdir()) / f"lgcore-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    out_dir = root / f"guest-{key}"
    image = out_dir / "guest.bin"
    if image.exists() and not force:
        return image
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise GuestBuildError(
            f"cannot build the demo guest: {', '.join(missing)} not found. "
            "Install GNU binutils (Debian/Ubuntu: apt-get install binutils) "
            "so that `as --32`, `ld -m elf_i386` and `objcopy` are available.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=out_dir.parent))
    try:
        inc = ["-I", str(GUEST_DIR), "-I", str(tmp)]
        _run(["as", "--32", *inc, str(GUEST_DIR / "user.S"), "-o", "user.o"], tmp)
        _run(["ld", "-m", "elf_i386", "-T", str(GUEST_DIR / "user.ld"), "user.o", "-o", "user.elf"], tmp)
        _run(["objcopy", "-O", "binary", "user.elf", "user.bin"], tmp)
        _run(["as", "--32", *inc, str(GUEST_DIR / "kernel.S"), "-o", "kernel.o"], tmp)
        _run(["ld", "-m", "elf_i386", "-T", str(GUEST_DIR / "kernel.ld"), "kernel.o", "-o", "kernel.elf"], tmp)
        _run(["objcopy", "-O", "binary", "kernel.elf", "guest.bin"], tmp)
        with open(tmp / "guest.syms", "w") as f:
            subprocess.run(["nm", "-n", "kernel.elf"], cwd=tmp, stdout=f, check=False)
        if force and out_dir.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            tmp.rename(out_dir)
        except OSError:
            if not image.exists():          # somebody else won the race, fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return image


def guest_symbols(image: Path) -> dict[str, int]:
    """Symbols of the built kernel (for --trace), if nm was there."""
    syms: dict[str, int] = {}
    path = image.parent / "guest.syms"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTdDbB":
                try:
                    syms[parts[2]] = int(parts[0], 16)
                except ValueError:
                    pass
    return syms
