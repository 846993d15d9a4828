"""Parser choice for the inbound mapping: python-hl7 vs hl7apy on a 3 KB ORU^R01 with 20 OBX.

Run: ``python bench/parse_choice.py [iterations]``. Prints the time per message of each
parser and of the whole mapping, and each as a ratio against python-hl7 measured in the
same process (best of 5 rounds, so machine speed cancels out of the ratios).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hl7  # noqa: E402
from hl7apy.consts import VALIDATION_LEVEL  # noqa: E402
from hl7apy.parser import parse_message  # noqa: E402

from mappings.inbound import map_oru  # noqa: E402
from mappings.validation import validate_structure  # noqa: E402

SENTENCES = [
    "The lungs are clear without focal consolidation or effusion.",
    "Heart size is normal and the mediastinal contours are unremarkable.",
    "No pneumothorax is identified on the current examination today.",
    "Degenerative changes of the thoracic spine are again noted here.",
    "Small calcified granuloma in the right upper lobe is unchanged.",
]


def sample_message(obx_count: int = 20) -> str:
    segments = [
        "MSH|^~\\&|RIS|GENERAL HOSPITAL|RI|GATEWAY|20240301120000||ORU^R01^ORU_R01|BENCH0001|P|2.5.1",
        "PID|1||MRN00012345^^^HOSP^MR~998877^^^HOSP^PI||DOE^JANE^Q||19600101|F|||1 MAIN ST^^TOWN^ST^00000",
        "PV1|1|I|WARD^101^A||||1234^SMITH^JOHN^^^DR|||||||||||V000123||||||||||||||||||||||||||20240301080000",
        "ORC|RE|PLC123|FIL456||CM",
        "OBR|1|PLC123|FIL456|71046^XR CHEST 2 VIEWS^C4|||20240301113000|||||||||1234^SMITH^JOHN^^^DR||ACC789"
        "||||20240301115500||RAD|F||||||||5678&READER&RITA",
    ]
    for i in range(obx_count):
        sentence = SENTENCES[i % len(SENTENCES)]
        segments.append(f"OBX|{i + 1}|TX|18782-3^Radiology Study observation^LN|{i + 1}|{sentence} Line {i + 1}."
                        f"||||||F|||20240301115500")
    return "\r".join(segments)


def best_per_call(fn: Callable[[], object], iterations: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    message = sample_message()
    results = {
        "python-hl7 hl7.parse": best_per_call(lambda: hl7.parse(message), iterations),
        "hl7apy parse_message (tolerant, groups)": best_per_call(
            lambda: parse_message(message, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True),
            max(1, iterations // 10)),
        "hl7apy strict parse + validate": best_per_call(
            lambda: validate_structure(message, "strict"), max(1, iterations // 10)),
        "map_oru (python-hl7, validation none)": best_per_call(lambda: map_oru(message), iterations),
    }
    baseline = results["python-hl7 hl7.parse"]
    print(f"message: {len(message)} bytes, 20 OBX")
    for name, seconds in results.items():
        print(f"{name:42s} {seconds * 1000:8.3f} ms  x{seconds / baseline:6.1f}")


if __name__ == "__main__":
    main()
