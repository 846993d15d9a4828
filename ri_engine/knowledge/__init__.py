"""Knowledge shipped with the engine as JSON data files, each naming its source.

``load_json(name)`` reads one file of this package (cached); files are never written at
run time and nothing is downloaded. ``pattern(source)`` compiles a (case-insensitive)
regular expression read from these files once per process: Python's own ``re`` cache
holds 512 entries and the rules hold more patterns than that, so relying on it would
recompile in turn.
"""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=None)
def load_json(name: str) -> Any:
    """The parsed content of ``ri_engine/knowledge/<name>``."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def pattern(source: str) -> re.Pattern[str]:
    """``source`` (a pattern from a knowledge file) compiled case-insensitive, once."""
    return re.compile(source, re.IGNORECASE)
