"""API keys for the job endpoints, checked the way Azure checks them.

Clients send the key in ``Ocp-Apim-Subscription-Key`` (what the Azure SDKs do
with an ``AzureKeyCredential``).  Keys come from the ``[http] api_keys``
setting or from the environment variable ``RI_GATEWAY_API_KEYS``
(comma-separated), the environment winning when it is set.  With no key at all
the job endpoints refuse every request: an analysis server for reports must
not be open by accident.

Keys are compared with :func:`hmac.compare_digest` against every configured key
(no early exit), and never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping

from .errors import ApiError

__all__ = ["ENV_VAR", "HEADER", "ApiKeys"]

ENV_VAR = "RI_GATEWAY_API_KEYS"
HEADER = "Ocp-Apim-Subscription-Key"

HOW_TO_SET = (
    f"set [http] api_keys in the configuration file or the environment variable {ENV_VAR} "
    "(comma-separated)"
)


class ApiKeys:
    """The set of accepted keys."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = tuple(k.strip().encode("utf-8") for k in keys if k and k.strip())

    @classmethod
    def from_sources(
        cls, configured: Iterable[str] = (), environ: Mapping[str, str] | None = None
    ) -> ApiKeys:
        """Keys from the environment when ``RI_GATEWAY_API_KEYS`` is set, else ``configured``."""
        env = os.environ if environ is None else environ
        from_env = env.get(ENV_VAR, "")
        if from_env.strip():
            return cls(from_env.split(","))
        return cls(configured)

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._keys)} key(s)>)"

    def matches(self, presented: bytes | str | None) -> bool:
        """True when ``presented`` equals one of the keys; constant time per key."""
        if presented is None:
            return False
        if isinstance(presented, str):
            presented = presented.encode("utf-8")
        found = False
        for key in self._keys:
            # Every key is compared, so timing does not tell which one matched.
            found |= hmac.compare_digest(key, presented)
        return found

    def check(self, presented: bytes | str | None) -> None:
        """Raise the :class:`ApiError` RI would answer with, unless the key is valid."""
        if not self._keys:
            raise ApiError(
                403, "ApiKeyNotConfigured",
                f"This server has no API key configured and refuses job requests; {HOW_TO_SET}.")
        if not self.matches(presented):
            raise ApiError(
                401, "Unauthorized",
                f"Access denied: a valid key is required in the {HEADER} header.")
