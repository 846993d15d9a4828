"""HL7 v2 <-> RI models: decoding, headers, ACKs, escapes and the ORU^R01 inbound mapping.

The only package that imports ``hl7`` (python-hl7) and ``hl7apy``. It does no I/O.
"""

from __future__ import annotations
