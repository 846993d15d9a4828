"""Knowledge shipped with the engine as JSON data files, each naming its source.

``load_json(name)`` reads one file of this package (cached); files are never written at
run time and nothing is downloaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=None)
def load_json(name: str) -> Any:
    """The parsed content of ``ri_engine/knowledge/<name>``."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)
