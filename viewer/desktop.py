"""`ra-view --install-desktop`: let the desktop open invitation files with ra-view.

What `xdg-mime install` and `xdg-desktop-menu install` do, for this user only, under the XDG
base directories (so a test can point them at a temporary folder):

1. the MIME type `application/x-remote-assist-invitation` (``*.rainvite``) into
   ``$XDG_DATA_HOME/mime/packages``, then ``update-mime-database`` rebuilds the cache;
2. ``ra-view.desktop`` into ``$XDG_DATA_HOME/applications`` with the absolute path of this
   ``ra-view`` (a virtualenv is seldom on the desktop's PATH), then ``update-desktop-database``;
3. ra-view as the default for the type in ``$XDG_CONFIG_HOME/mimeapps.list``
   (what ``xdg-mime default`` writes).

A missing cache tool is reported and skipped: the files alone are enough for most desktops.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.tickets import MIME_TYPE, write_atomically

__all__ = ["DESKTOP_FILE", "Installed", "install_desktop", "install_desktop_main"]

DESKTOP_FILE = "ra-view.desktop"
MIME_FILE = "remote-assist.xml"
DEFAULTS = "Default Applications"


@dataclass(frozen=True, kw_only=True, slots=True)
class Installed:
    desktop_entry: Path
    mime_package: Path
    mimeapps: Path
    skipped: tuple[str, ...]  # cache tools that are not installed here


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec: a relative path in these variables is invalid and must be ignored.
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def _command() -> str:
    """How the desktop should start ra-view: this installation's script, by absolute path."""
    script = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "ra-view" else None
    found = script if script is not None and script.exists() else shutil.which("ra-view")
    if found:
        return shlex.quote(str(found))
    return f"{shlex.quote(sys.executable)} -m viewer.expert"


def _data(name: str) -> str:
    return (resources.files("viewer") / "data" / name).read_text(encoding="utf-8")


def _run(tool: str, *args: str) -> bool:
    binary = shutil.which(tool)
    if binary is None:
        return False
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=120)
    return True


def install_desktop(command: str | None = None) -> Installed:
    """Install the MIME type and the desktop entry for this user; what was written."""
    data = _xdg("XDG_DATA_HOME", ".local/share")
    config = _xdg("XDG_CONFIG_HOME", ".config")
    skipped: list[str] = []

    mime_dir = data / "mime"
    package = mime_dir / "packages" / MIME_FILE
    package.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(package, _data(MIME_FILE).encode(), mode=0o644)
    if not _run("update-mime-database", str(mime_dir)):
        skipped.append("update-mime-database")

    applications = data / "applications"
    entry = applications / DESKTOP_FILE
    applications.mkdir(parents=True, exist_ok=True)
    text = _data(DESKTOP_FILE).replace("@EXEC@", command or _command())
    write_atomically(entry, text.encode(), mode=0o644)
    if not _run("update-desktop-database", str(applications)):
        skipped.append("update-desktop-database")

    mimeapps = config / "mimeapps.list"
    defaults = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    defaults.optionxform = str  # type: ignore[assignment, method-assign]  # keys keep their case
    defaults.read(mimeapps, encoding="utf-8")
    if not defaults.has_section(DEFAULTS):
        defaults.add_section(DEFAULTS)
    defaults.set(DEFAULTS, MIME_TYPE, DESKTOP_FILE)
    mimeapps.parent.mkdir(parents=True, exist_ok=True)
    with open(mimeapps, "w", encoding="utf-8") as file:
        defaults.write(file, space_around_delimiters=False)
    return Installed(desktop_entry=entry, mime_package=package, mimeapps=mimeapps,
                     skipped=tuple(skipped))


def install_desktop_main() -> int:
    try:
        installed = install_desktop()
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"ra-view: could not register invitation files ({exc}); check that your home "
              "folder is writable", file=sys.stderr)
        return 1
    print(f"Invitation files (*.rainvite, {MIME_TYPE}) now open with ra-view.")
    print(f"  desktop entry: {installed.desktop_entry}")
    print(f"  MIME type:     {installed.mime_package}")
    print(f"  default in:    {installed.mimeapps}")
    for tool in installed.skipped:
        print(f"ra-view: {tool} is not installed, so its cache was not rebuilt; most desktops "
              "read the files anyway", file=sys.stderr)
    return 0
