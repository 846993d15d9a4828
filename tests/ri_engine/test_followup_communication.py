"""followupCommunication: the verbs that make a sentence a communication, the recipients and
the time written in it."""

from __future__ import annotations

import pytest

from ri_engine.nlp.dates import find_times
from request_builder import analyse, build_request


def communications(text: str) -> list[tuple[list[str], bool, list[str] | None]]:
    produced = analyse(build_request(text), "followupCommunication")
    return [(list(i.recipient or []), i.was_acknowledged, i.communicated_at) for i in produced]


@pytest.mark.parametrize(("text", "hour_minute"), [
    ("Discussed with Dr. Patel at 1430 hours.", (14, 30)),
    ("Discussed with Dr. Patel at 0215.", (2, 15)),
    ("Called to the ED at 2305 hrs.", (23, 5)),
    ("Paged at 0930h.", (9, 30)),
    ("Discussed at 15:20.", (15, 20)),
])
def test_twenty_four_hour_times(text: str, hour_minute: tuple[int, int]) -> None:
    assert [(t.hour, t.minute) for t in find_times(text)] == [hour_minute]


@pytest.mark.parametrize("text", [
    "Nodule unchanged since 2019.",
    "Volume 1430 mL.",
    "Measured at 2400 units.",
    "Dose 12.5 at 1230.5 mGy.",
])
def test_four_digits_that_are_no_time(text: str) -> None:
    assert find_times(text) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("IMPRESSION: Pulmonary embolism. Discussed with Dr. Patel at 1430 hours on 01/15/2024.",
     [(["doctor"], True, ["2024-01-15T14:30:00"])]),
    ("IMPRESSION: Pulmonary embolism. Findings discussed with Dr. Patel at 0215.",
     [(["doctor"], True, ["2024-01-15T02:15:00"])]),
    ("IMPRESSION: Pulmonary embolism. Dr. Ortiz was made aware of these findings at 3:40 pm.",
     [(["doctor"], False, ["2024-01-15T15:40:00"])]),
    ("IMPRESSION: Pulmonary embolism. Dr. Ortiz was alerted to the findings by telephone.",
     [(["doctor"], True, None)]),
    ("IMPRESSION: Small pneumothorax. Critical result notification was placed via the "
     "PowerScribe critical results system to Dr. Lee on 1/14/2024.",
     [(["doctor"], False, ["2024-01-14T00:00:00"])]),
    ("IMPRESSION: Appendicitis. These findings were communicated to the ED physician "
     "assistant, John Park, PA-C, at 3:10 p.m.",
     [(["physicianAssistant"], False, ["2024-01-15T15:10:00"])]),
    ("IMPRESSION: No acute findings. No notification was needed.", []),
])
def test_communication_phrasing(text: str, expected: list) -> None:
    assert communications(text) == expected
