"""Building instances of the frozen dataclasses read on every message, cheaply.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__``: for the 18 fields of an MSH that is most of the time
``read_header`` takes.  ``frozen_instance`` fills the instance's ``__dict__`` in one
step instead.  The instance is the same (equality, hash, repr and immutability come
from the class), provided every field is given: these classes have no
``__post_init__`` and no ``__slots__``, and a test compares each with one built by
its constructor.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def frozen_instance(cls: type[T], **fields: Any) -> T:
    """``cls(**fields)`` for a frozen dataclass without ``__post_init__`` or ``__slots__``."""
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance
