"""Where remote-assist keeps its files, through platformdirs.

On Linux that is ``$XDG_CONFIG_HOME/remote-assist`` (identity, settings) and
``$XDG_STATE_HOME/remote-assist`` (the invitation store), with the usual fallbacks.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

__all__ = ["APP_NAME", "config_dir", "state_dir"]

APP_NAME = "remote-assist"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP_NAME))
