"""One base for every error that describes bad input: `LiftdataError`.

Each module's specific errors derive from it (and from the builtin class they always were, e.g.
`ValueError`, so existing `except ValueError` code keeps working) and name the input they refuse
(a file, a field, a shard, a key). The `liftdata` command prints any `LiftdataError` as one line
and exits with status 2.
"""

from __future__ import annotations

__all__ = ["LiftdataError", "ConfigError"]


class LiftdataError(Exception):
    """Bad input, a bad setting or an unusable file or directory; the message names it."""


class ConfigError(LiftdataError, ValueError):
    """An `ExpandConfig` field (or recipe key / command-line option) with an invalid value."""
