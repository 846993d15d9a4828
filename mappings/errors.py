"""Errors raised while reading, checking and mapping HL7 v2 messages.

Every error carries the HL7 table 0357 code the ACK should report, the place in
the message it concerns and a human-readable text (never any segment content, so
it is safe to log and to send back in ERR)::

    HL7Error(Exception)            .err_code, .location, .message
    ├── UnreadableHeader           MSH missing or unreadable            -> no ACK / AR (see ack.py)
    ├── UnsupportedMessage         200 type, 201 event, 202 processing
    │                              id, 203 version                      -> AR
    └── ContentError               100 segment missing, 101 required
                                   field missing, 102 data type error,
                                   103 table value not found            -> AE

``MappingConfigError`` is separate: it is a configuration mistake found at start-up,
never a property of a message, and it names the offending key.

Table 0357 codes used here (``ERROR_TEXTS`` holds every code of the table as HL7
Terminology publishes it, code system ``v2-0357``, where 104, 198 and 199 are later
additions and 204-206 are kept for backward compatibility; ``gateway.downstream_acks``
judges the codes a destination sends back):

=====  ==============================  =======================================
code   meaning                         raised when
=====  ==============================  =======================================
100    Segment sequence error          a required segment (PID, OBR) is absent
101    Required field missing          e.g. no report text in any OBX-5
102    Data type error                 a field cannot be parsed as its type
103    Table value not found           a coded value is not in the table
199    Other HL7 error                 the engine refuses the mapped report
                                       (``ack_after = "analysis"``)
200    Unsupported message type        MSH-9.1 not accepted
201    Unsupported event code          MSH-9.2 not accepted
202    Unsupported processing id       MSH-11 not accepted
203    Unsupported version id          MSH-12 not accepted
207    Application internal error      our own failure (used by the gateway)
=====  ==============================  =======================================
"""

from __future__ import annotations

ERROR_TEXTS: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "198": "Non-conformant cardinality",
    "199": "Other HL7 error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


class HL7Error(Exception):
    """Base class: something about a message that the sender must be told about.

    ``err_code`` is the HL7 table 0357 code, ``location`` a segment or
    ``SEG-n`` field reference (``""`` when the whole message is concerned) and
    ``message`` a text fit for ERR and for logs.
    """

    default_code = "207"

    def __init__(self, message: str, *, err_code: str | None = None, location: str = "") -> None:
        super().__init__(message)
        self.err_code = err_code or self.default_code
        self.location = location
        self.message = message

    @property
    def code_text(self) -> str:
        """The table 0357 description of ``err_code``."""
        return ERROR_TEXTS.get(self.err_code, "Application error")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, err_code={self.err_code!r}, location={self.location!r})"


class UnreadableHeader(HL7Error):
    """The MSH segment is missing or cannot be read (bad MSH-1/MSH-2, no MSH at all)."""

    default_code = "102"

    def __init__(self, message: str, *, err_code: str | None = None, location: str = "MSH") -> None:
        super().__init__(message, err_code=err_code, location=location)


class UnsupportedMessage(HL7Error):
    """A readable message this receiver does not accept: answered with AR (codes 200-203)."""

    default_code = "200"


class ContentError(HL7Error):
    """Bad content in an accepted message type: answered with AE (codes 100-103)."""

    default_code = "101"


class MappingConfigError(ValueError):
    """An invalid mapping configuration value; ``key`` is the dotted key that is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
