"""The ``outbox`` table: its definition, indexes and the upgrades of older tables.

It lives in the audit database. Schema::

    outbox
      id                INTEGER PRIMARY KEY AUTOINCREMENT   delivery order per destination
      destination       TEXT     [destinations.NAME]
      route             TEXT     [routes.NAME] (or "application_ack")
      purpose           TEXT     results | alerts | application_ack
      control_id        TEXT     MSH-10 of the outbound message (MSA-2 must echo it)
      source_control_id TEXT     MSH-10 of the inbound message (audit events are keyed by it)
      message_id        INTEGER  messages.id of the inbound message, when known
      payload           BLOB     the message exactly as sent
      status            TEXT     pending | held | delivered | dead  (held: an alert waiting
                                 for an earlier alert of its study; gateway.held_alerts)
      attempts          INTEGER  delivery attempts made
      next_attempt_at   REAL     clock seconds before which no attempt is made (backoff)
      created_at        REAL     clock seconds
      updated_at        REAL
      delivered_at      REAL
      ack_code          TEXT     MSA-1 of the last ACK received
      last_error        TEXT     why the last attempt failed (never message content)
      escalated_from    INTEGER  the outbox id of the alert this one escalates
                                 ([routes.NAME] escalate_to; gateway.escalation)
      accession         TEXT     alerts, results: the study's accession  (one page per
      pages             TEXT     JSON: digests of the patient's ids;      result per study:
                                 alerts: what it pages                    gateway.repeat_alerts;
                                                                          versions of results:
                                                                          gateway.superseded_results)
"""

from __future__ import annotations

import sqlite3

from .audit import has_table

__all__ = ["COLUMNS", "COLUMNS_BEFORE_ESCALATION", "create_in", "ensure_schema",
           "has_escalation"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    route TEXT NOT NULL,
    purpose TEXT NOT NULL,
    control_id TEXT NOT NULL,
    source_control_id TEXT,
    message_id INTEGER,
    payload BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL,
    delivered_at REAL,
    ack_code TEXT,
    last_error TEXT,
    escalated_from INTEGER,
    accession TEXT,
    pages TEXT
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (destination, status, id);
"""
# After the table exists (a table from before escalation gets the column first); also run
# on an existing table, so each index added here reaches the databases of earlier versions.
# outbox_held: the held alerts counted per destination at each metrics scrape, which
# without it read the whole outbox queue index (there are seldom any held; status leads,
# or the planner preferred outbox_queue).
# outbox_message: the alerts of a report (gateway.critical_results) without reading every
# result kept until purged, and a purge (gateway.retention) deleting a message's outbox rows
# and checking that none is pending without reading the whole outbox under the write lock.
_ESCALATION_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_escalated ON outbox (escalated_from)
    WHERE escalated_from IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_message ON outbox (message_id);
CREATE INDEX IF NOT EXISTS outbox_accession ON outbox (accession, destination)
    WHERE accession IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_held ON outbox (status, destination) WHERE status = 'held';
"""

# In the order of gateway.outbox.OutboxRow's fields.
COLUMNS = ("id, destination, route, purpose, control_id, source_control_id, message_id, payload, "
           "status, attempts, next_attempt_at, created_at, updated_at, delivered_at, ack_code, "
           "last_error, escalated_from")
# An outbox table written before escalation, read without adding the column (read-only).
COLUMNS_BEFORE_ESCALATION = COLUMNS.replace("escalated_from", "NULL")


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)
    _upgrade(conn)
    conn.executescript(_ESCALATION_INDEXES)


def create_in(conn: sqlite3.Connection) -> None:
    """Create the table in ``conn``'s open transaction if it is not there (executescript
    would commit that transaction first)."""
    if not has_table(conn, "outbox"):
        for statement in _statements(_SCHEMA) + _statements(_ESCALATION_INDEXES):
            conn.execute(statement)


def has_escalation(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "escalated_from" for row in conn.execute("PRAGMA table_info(outbox)"))


def _statements(script: str) -> list[str]:
    return [statement for statement in script.strip().split(";") if statement.strip()]


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add what later versions added to an existing outbox table."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    for column, kind in (("escalated_from", "INTEGER"), ("accession", "TEXT"),
                         ("pages", "TEXT")):
        if column not in columns:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
