"""The evaluation: keys, multiset scoring, corpus errors, and the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine_samples import engine
from ri_engine.evaluation import CorpusError, evaluate, load_cases


def write(tmp_path: Path, *cases: dict) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def test_scores_per_kind_and_negation(tmp_path: Path) -> None:
    path = write(tmp_path,
                 {"id": "a", "text": "FINDINGS: No pneumothorax. Small left pleural effusion.",
                  "expect": {"finding": ["36118008|absent", "60046008|present"], "criticalResult": []}},
                 {"id": "b", "text": "FINDINGS: Small right pneumothorax.",
                  # deliberately wrong label: one false negative and one false positive
                  "expect": {"criticalResult": ["TENSION PNEUMOTHORAX"]}})
    report = evaluate([path], engine())
    scores = report.to_json()["kinds"]
    assert (scores["finding"]["tp"], scores["finding"]["fp"], scores["finding"]["fn"]) == (2, 0, 0)
    assert (scores["negation"]["tp"], scores["negation"]["fp"], scores["negation"]["fn"]) == (1, 0, 0)
    assert (scores["criticalResult"]["tp"], scores["criticalResult"]["fp"],
            scores["criticalResult"]["fn"]) == (0, 1, 1)
    assert report.errors == [{"case": "b", "kind": "criticalResult",
                              "missing": ["TENSION PNEUMOTHORAX"],
                              "extra": ["PNEUMOTHORAX, NO EVIDENCE OF TENSION"]}]


def test_finding_sizes_join_the_key_only_when_the_case_asks(tmp_path: Path) -> None:
    text = "FINDINGS: Left lower lobe nodule, previously 5 mm, now 8 mm. A 1.2-1.5 cm cyst, up to 8 mm."
    path = write(tmp_path,
                 {"id": "s", "text": text, "findingSizes": True,
                  "expect": {"finding": ["27925004|present|prev:5mm,8mm", "367643001|present|1.2-1.5cm,<=8mm"]}},
                 {"id": "t", "text": text, "expect": {"finding": ["27925004|present", "367643001|present"]}})
    assert evaluate([path], engine()).errors == []


def test_a_resolved_finding_is_keyed_resolved_and_is_no_negation(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "id": "r", "text": "FINDINGS: The left pleural effusion has resolved. No pneumothorax.",
        "expect": {"finding": ["60046008|resolved", "36118008|absent"]}})
    report = evaluate([path], engine())
    scores = report.to_json()["kinds"]
    assert report.errors == []
    assert (scores["negation"]["tp"], scores["negation"]["fp"], scores["negation"]["fn"]) == (1, 0, 0)


def test_procedure_and_communication_keys(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "id": "c", "text": "EXAM: CT abdomen and pelvis.\nFINDINGS: Normal.\n"
                           "Discussed with Dr. Roe and Ann Lee, PA, at 3 PM.",
        "procedure": {"system": "http://loinc.org", "code": "44115-4",
                      "display": "CT ABDOMEN AND PELVIS"},
        "expect": {"radiologyProcedure": ["77477000+77477000"],
                   "followupCommunication": ["doctor+physicianAssistant|ack"]}})
    report = evaluate([path], engine())
    assert report.errors == []


def test_body_parts_without_a_code_are_keyed_by_display(tmp_path: Path) -> None:
    # The ovaries have no verified RadLex id: the engine names them by display only.
    path = write(tmp_path, {
        "id": "d", "text": "FINDINGS: The uterus measures 8 cm. The endometrium measures 6 mm. "
                           "The right ovary measures 3 x 2 x 2 cm.",
        "sex": "female",
        "procedure": {"system": "http://www.ama-assn.org/go/cpt", "code": "76856",
                      "display": "US PELVIS COMPLETE"},
        "expect": {"completeOrderDiscrepancy": ["24869-0|missing:LEFT OVARY|meas:LEFT OVARY"]}})
    report = evaluate([path], engine())
    assert report.errors == []


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "not JSON"),
    ('{"id": "x"}', "non-empty 'text'"),
    ('{"id": "x", "text": "t", "expect": {"nonsense": []}}', "unknown kind 'nonsense'"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "text": "t", "expect": {}}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_cases([path])
    assert info.value.line == 2 and message in str(info.value)


def test_evaluate_command_table_and_json(tmp_path: Path) -> None:
    from gateway.cli import main

    path = write(tmp_path, {"id": "a", "text": "FINDINGS: No pneumothorax.",
                            "expect": {"finding": ["36118008|absent"]}})
    runner = CliRunner()
    table = runner.invoke(main, ["evaluate", "--corpus", str(path)])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["kind", "cases", "tp", "fp", "fn", "P", "R", "F1"]
    as_json = runner.invoke(main, ["evaluate", "--corpus", str(path), "--json"])
    assert json.loads(as_json.output)["kinds"]["negation"]["f1"] == 1.0
    missing = runner.invoke(main, ["evaluate", "--corpus", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "corpus not found" in missing.output


def test_shipped_corpus_meets_targets() -> None:
    corpus = Path(__file__).resolve().parents[2] / "eval" / "corpus"
    paths = sorted(corpus.glob("engine_*.jsonl"))
    if not paths:
        pytest.skip("engine corpus not present")
    kinds = evaluate(paths, engine()).to_json()["kinds"]
    assert len(load_cases(paths)) >= 150
    assert kinds["criticalResult"]["f1"] >= 0.95 and kinds["negation"]["f1"] >= 0.95
    assert kinds["followupRecommendation"]["f1"] >= 0.90 and kinds["finding"]["f1"] >= 0.90
