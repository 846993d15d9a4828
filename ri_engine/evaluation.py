"""Score the engine on a labelled corpus: precision, recall and F1 per inference kind.

Corpus files are JSON lines (``eval/corpus/*.jsonl``, format in ``eval/README.md``). Each case
is turned into an RI request, analysed, and every inference reduced to a short key (``key_of``);
scoring is multiset precision/recall of predicted against expected keys, per kind, over the
kinds each case is labelled for. "negation" scores the ``|absent`` finding keys alone.

    report = evaluate([Path("eval/corpus")])
    print(report.table())

Errors: ``CorpusError`` (a ``ValueError``) names the file and line of a malformed case.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Engine
from .models import INFERENCE_TYPES, Inference, RadiologyInsightsData

DEFAULT_CREATED_AT = "2024-01-15T00:00:00"
NONE_CODE, RESOLVED_CODE = "260413007", "723506003"
SIZE_CODE, PREVIOUS_SIZE_CODE = "246115007", "9130008"
_UNIT_KEYS = {"MILLIMETER": "mm", "CENTIMETER": "cm"}


class CorpusError(ValueError):
    """A corpus line is not a valid case (``path`` and ``line`` say where)."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    kinds: tuple[str, ...]
    expect: dict[str, list[str]]
    raw: dict[str, Any]

    def request(self) -> RadiologyInsightsData:
        raw = self.raw
        document: dict[str, Any] = {
            "id": f"{self.id}-doc", "type": "note", "clinicalType": "radiologyReport",
            "language": "EN", "createdAt": raw.get("createdAt", DEFAULT_CREATED_AT),
            "content": {"sourceType": "inline", "value": self.text}}
        procedure = raw.get("procedure")
        if procedure:
            document["administrativeMetadata"] = {"orderedProcedures": [{
                "code": {"coding": [{"system": procedure.get("system", "http://loinc.org"),
                                     "code": procedure["code"], "display": procedure["display"]}]},
                "description": procedure.get("description", procedure["display"])}]}
        encounter: dict[str, Any] = {"id": f"{self.id}-enc"}
        if raw.get("encounterStart"):
            encounter["period"] = {"start": raw["encounterStart"]}
        details = {k: raw[k] for k in ("sex", "birthDate") if raw.get(k)}
        configuration: dict[str, Any] = {"inferenceTypes": list(self.kinds), "locale": "en-US",
                                         "includeEvidence": False}
        if raw.get("measureTypes"):
            configuration["inferenceOptions"] = {
                "qualityMeasureOptions": {"measureTypes": raw["measureTypes"]}}
        if raw.get("options"):
            configuration.setdefault("inferenceOptions", {}).update(raw["options"])
        return RadiologyInsightsData.from_json({
            "patients": [{"id": f"{self.id}-patient", "details": details,
                          "encounters": [encounter], "patientDocuments": [document]}],
            "configuration": configuration})


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    cases: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, expected: Counter[str], predicted: Counter[str]) -> None:
        overlap = sum((expected & predicted).values())
        self.tp += overlap
        self.fp += sum(predicted.values()) - overlap
        self.fn += sum(expected.values()) - overlap
        self.cases += 1


@dataclass
class Report:
    scores: dict[str, Score] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)  # per case and kind: missing/extra
    cases: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "kinds": {kind: {"precision": round(s.precision, 4), "recall": round(s.recall, 4),
                             "f1": round(s.f1, 4), "tp": s.tp, "fp": s.fp, "fn": s.fn,
                             "cases": s.cases} for kind, s in self.scores.items()},
            "errors": self.errors,
        }

    def table(self) -> str:
        lines = [f"{'kind':<26}{'cases':>6}{'tp':>6}{'fp':>6}{'fn':>6}{'P':>8}{'R':>8}{'F1':>8}"]
        for kind, s in self.scores.items():
            lines.append(f"{kind:<26}{s.cases:>6}{s.tp:>6}{s.fp:>6}{s.fn:>6}"
                         f"{s.precision:>8.3f}{s.recall:>8.3f}{s.f1:>8.3f}")
        lines.append(f"{self.cases} cases")
        return "\n".join(lines)


def load_cases(paths: Iterable[Path]) -> list[Case]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    cases: list[Case] = []
    seen: set[str] = set()
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            case = _case(file, number, line)
            if case.id in seen:
                raise CorpusError(file, number, f"duplicate case id {case.id!r}")
            seen.add(case.id)
            cases.append(case)
    return cases


def _case(file: Path, number: int, line: str) -> Case:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(file, number, f"not JSON: {exc.msg}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw.get("text"):
        raise CorpusError(file, number, "a case needs a string 'id' and a non-empty 'text'")
    expect = raw.get("expect") or {}
    if not isinstance(expect, dict) or not all(isinstance(v, list) for v in expect.values()):
        raise CorpusError(file, number, "'expect' must map kinds to lists of keys")
    kinds = tuple(raw.get("kinds") or expect.keys())
    unknown = [k for k in list(kinds) + list(expect) if k not in INFERENCE_TYPES]
    if unknown:
        raise CorpusError(file, number, f"unknown kind {unknown[0]!r}")
    return Case(id=raw["id"], text=raw["text"], kinds=kinds,
                expect={k: list(expect.get(k, [])) for k in kinds}, raw=raw)


def evaluate(paths: Iterable[Path], engine: Engine | None = None) -> Report:
    engine = engine or Engine()
    report = Report()
    for case in load_cases(paths):
        report.cases += 1
        result = engine.analyze(case.request())
        inferences = [i for r in result.patient_results for i in r.inferences]
        sizes = bool(case.raw.get("findingSizes"))
        for kind in case.kinds:
            predicted = Counter(key_of(i, sizes=sizes) for i in inferences if i.kind == kind)
            expected = Counter(case.expect.get(kind, []))
            report.scores.setdefault(kind, Score()).add(expected, predicted)
            if kind == "finding":
                report.scores.setdefault("negation", Score()).add(
                    Counter({k: n for k, n in expected.items() if k.endswith("|absent")}),
                    Counter({k: n for k, n in predicted.items() if k.endswith("|absent")}))
            if expected != predicted:
                report.errors.append({
                    "case": case.id, "kind": kind,
                    "missing": sorted((expected - predicted).elements()),
                    "extra": sorted((predicted - expected).elements())})
    order = list(INFERENCE_TYPES) + ["negation"]
    report.scores = dict(sorted(report.scores.items(), key=lambda kv: order.index(kv[0])))
    return report


def key_of(inference: Inference, sizes: bool = False) -> str:
    """The short comparable key of an inference (the corpus format, eval/README.md).

    ``sizes`` (a case's ``"findingSizes": true``) adds a finding's SIZE components to its key."""
    j = inference.to_json()
    kind = j["kind"]
    if kind == "finding":
        observation = j["finding"]
        soi = next((c["valueCodeableConcept"]["coding"][0]["code"]
                    for c in observation.get("component", [])
                    if c["code"]["coding"][0]["code"] == "131195008"), "-")
        interpretations = {i["coding"][0]["code"] for i in observation.get("interpretation", [])}
        status = ("absent" if NONE_CODE in interpretations
                  else "resolved" if RESOLVED_CODE in interpretations else "present")
        key = f"{soi}|{status}"
        return f"{key}|{_size_key(observation)}" if sizes else key
    if kind == "criticalResult":
        return j["result"]["description"]
    if kind == "followupRecommendation":
        procedure = j["recommendedProcedure"]
        if procedure["kind"] == "genericProcedureRecommendation":
            return f"generic:{procedure['code']['coding'][0]['code']}"
        return procedure["imagingProcedures"][0]["modality"]["coding"][0]["code"]
    if kind == "followupCommunication":
        ack = "ack" if j.get("wasAcknowledged") else "noack"
        return f"{'+'.join(sorted(j.get('recipient') or []))}|{ack}"
    if kind == "radiologyProcedure":
        return "+".join(sorted(p["modality"]["coding"][0]["code"] for p in j["imagingProcedures"]))
    return _quality_key(kind, j)


def _size_key(observation: dict[str, Any]) -> str:
    """The SIZE components in order: "prev:" for PREVIOUS, the comparator, the value or
    "low-high", the unit ("mm"/"cm"): "prev:5mm,8mm", "<=8mm", "1.2-1.5cm"."""
    out = []
    for component in observation.get("component", []):
        if component["code"]["coding"][0]["code"] != SIZE_CODE:
            continue
        prior = any(c["code"] == PREVIOUS_SIZE_CODE
                    for i in component.get("interpretation", []) for c in i["coding"])
        if "valueRange" in component:
            low, high = component["valueRange"]["low"], component["valueRange"]["high"]
            value, unit = f"{low['value']:g}-{high['value']:g}", low["unit"]
        else:
            quantity = component["valueQuantity"]
            value, unit = f"{quantity.get('comparator', '')}{quantity['value']:g}", quantity["unit"]
        out.append(f"{'prev:' if prior else ''}{value}{_UNIT_KEYS.get(unit, unit)}")
    return ",".join(out)


def _first_code(concept: dict[str, Any] | None) -> str:
    """The first coding's code; its display when it has none (a body part without a verified
    RadLex id, such as LEFT OVARY); "-" without a coding."""
    if not concept or not concept.get("coding"):
        return "-"
    coding = concept["coding"][0]
    return str(coding.get("code") or coding.get("display") or "-")


def _codes(concepts: list[dict[str, Any]] | None) -> str:
    return ",".join(sorted(_first_code(c) for c in concepts or []))


def _quality_key(kind: str, j: dict[str, Any]) -> str:
    if kind == "ageMismatch":
        return "ageMismatch"
    if kind == "sexMismatch":
        return _first_code(j.get("sexIndication"))
    if kind == "lateralityDiscrepancy":
        return f"{j['discrepancyType']}|{_first_code(j.get('lateralityIndication'))}"
    if kind == "completeOrderDiscrepancy":
        return (f"{_first_code(j.get('orderType'))}|missing:{_codes(j.get('missingBodyParts'))}"
                f"|meas:{_codes(j.get('missingBodyPartMeasurements'))}")
    if kind == "limitedOrderDiscrepancy":
        return f"{_first_code(j.get('orderType'))}|present:{_codes(j.get('presentBodyParts'))}"
    if kind == "scoringAndAssessment":
        value = j.get("singleValue")
        if value is None and j.get("rangeValue"):
            value = f"{j['rangeValue']['minimum']}-{j['rangeValue']['maximum']}"
        return f"{j['category']}|{value}"
    if kind == "guidance":
        return f"{_first_code(j.get('identifier'))}|{j.get('ranking')}"
    if kind == "qualityMeasure":
        return f"{j['qualityMeasureDenominator']}|{j['complianceType']}"
    return kind
