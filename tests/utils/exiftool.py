"""ExifTool (Debian's libimage-exiftool-perl) as an independent oracle for what a file says about
where it was taken and who took it: its reader is not ours, and it reads every metadata form it
knows (EXIF, XMP in every namespace and packet, IPTC, PNG text, HEIF items, maker's notes...).
It also writes metadata into real files, which the privacy tests use to make fixtures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

# Tag names that say where, who, or which device: any group, any namespace.
FORBIDDEN_TAG = re.compile(
    r"GPS|Location|City|Country|State|Province|Sublocation|Creator|Artist|Author|By-?line|Owner"
    r"|Serial|Contact|E-?mail|Phone|Tel|Address|Adr|URL|Copyright|Rights|Credit|Writer|Person"
    r"|UniqueID|MakerNote|Latitude|Longitude",
    re.IGNORECASE,
)
# What a kept file may hold, as ExifTool names its groups: the file's own structure, the
# orientation in IFD0, the colour profile (ICC*, kept byte for byte and checked apart), the
# decoder's JFIF/Adobe segments and the HEIF/AVIF boxes that describe the coded image.
ALLOWED_GROUPS = {
    "ExifTool", "System", "File", "JFIF", "Adobe", "IFD0", "PNG", "PNG-pHYs", "RIFF",
    "QuickTime", "Meta", "Composite",
}  # fmt: skip
_STRUCTURE = {"ExifTool", "System", "File", "Composite"}  # the tool's and the file system's facts
_IFD0_ALLOWED = {"Orientation"}
_ARGS = ["-a", "-G1", "-j", "-ee", "-u", "-m"]


def exiftool() -> str:
    found = shutil.which("exiftool")
    if found is None:
        pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl (bootstrap.sh)")
    return found


def read_tags(files: list[bytes]) -> list[dict[str, Any]]:
    """Every tag ExifTool reads in each of `files` (one run for all), as {"Group:Tag": value}."""
    if not files:
        return []
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"image{index:05d}" for index in range(len(files))]
        for path, data in zip(paths, files, strict=True):
            path.write_bytes(data)
        out = subprocess.run(
            [exiftool(), *_ARGS, *map(str, paths)], capture_output=True, check=True, timeout=600
        ).stdout
    found = {Path(tags.pop("SourceFile")).name: tags for tags in json.loads(out)}
    return [found[path.name] for path in paths]


def identifying(data: bytes, secrets: Sequence[str] = ()) -> list[str]:
    """What ExifTool finds in `data` that a kept file must not hold: a tag named for a place, a
    person, contact data or a device, a group outside ALLOWED_GROUPS (ICC profiles aside), an IFD0
    tag other than the orientation, a value holding one of `secrets`, or a warning."""
    return identifying_each([data], secrets)[0]


def identifying_each(files: list[bytes], secrets: Sequence[str] = ()) -> list[list[str]]:
    """`identifying` of each of `files`, with one ExifTool run."""
    return [_identifying(tags, secrets) for tags in read_tags(files)]


def _identifying(tags: dict[str, Any], secrets: Sequence[str]) -> list[str]:
    found = []
    for key, value in tags.items():
        group, _, tag = key.partition(":")
        text = json.dumps(value)
        if group.startswith("ICC"):
            continue  # the colour profile, kept as sent (the tests compare it byte for byte)
        if FORBIDDEN_TAG.search(tag) and group not in _STRUCTURE - {"Composite"}:
            found.append(f"{key}={text}")
        elif group not in ALLOWED_GROUPS:
            found.append(f"{key}={text} (group)")
        elif group == "IFD0" and tag not in _IFD0_ALLOWED:
            found.append(f"{key}={text} (IFD0)")
        elif any(secret in text for secret in secrets):
            found.append(f"{key}={text} (secret)")
        elif group == "ExifTool" and tag in ("Error", "Warning"):
            found.append(f"{key}={text} (ExifTool cannot read it cleanly)")
    return found


def write_tags(data: bytes, *assignments: str) -> bytes:
    """`data` with ExifTool's writer having set `assignments` ("-GPSLatitude=48.85", ...)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image"
        path.write_bytes(data)
        subprocess.run(
            [exiftool(), "-q", "-m", "-overwrite_original", *assignments, str(path)],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return path.read_bytes()
