"""The command line through click's CliRunner (commands that run a reactor: see test_serve_e2e)."""

from __future__ import annotations

import json
import sqlite3
import signal
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from gateway.audit import AuditLog, ReceivedMessage
from gateway.cli import main
from gateway.commands.send import split_messages
from gateway.inputs import TextMetadata, text_request

from gateway_fake_engine import FakeEngine
from gateway_process import ROOT, WAIT, LineReader, cli_env
from gateway_samples import oru

GATEWAY_COMMANDS = {"serve", "send", "sink", "audit", "map", "analyze"}


def invoke(*args, obj=None, input=None):
    runner = CliRunner()
    return runner.invoke(main, list(args), obj=obj or {"engine_factory": FakeEngine},
                         input=input, catch_exceptions=False)


def test_help_version_and_every_option_documented():
    result = invoke("-h")
    assert result.exit_code == 0
    assert GATEWAY_COMMANDS <= set(main.commands)
    assert invoke("--version").output.startswith("ri-gateway, version ")

    def walk(command, path):
        assert command.help, f"{path} has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{path} {param.opts} has no help text"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    for name in GATEWAY_COMMANDS:
        walk(main.commands[name], name)


def test_split_messages_handles_line_ends_and_envelopes():
    data = (b"\xef\xbb\xbfFHS|^~\\&|X\r\nBHS|^~\\&|X\r\nMSH|^~\\&|A|B|||||ORU^R01|1|P|2.5\r\n"
            b"PID|1\r\n\r\nMSH|^~\\&|A|B|||||ORU^R01|2|P|2.5\nOBX|1|TX|||MSH text\nBTS|2\rFTS|1\r")
    # The file's UTF-8 BOM goes with every message (gateway.commands.send).
    assert split_messages(data) == [
        b"\xef\xbb\xbfMSH|^~\\&|A|B|||||ORU^R01|1|P|2.5\rPID|1\r",
        b"\xef\xbb\xbfMSH|^~\\&|A|B|||||ORU^R01|2|P|2.5\rOBX|1|TX|||MSH text\r",
    ]
    assert split_messages(b"hello\n") == []


def test_map_prints_the_ri_request_per_obr(tmp_path):
    from mappings.inbound import map_oru

    path = tmp_path / "m.hl7"
    path.write_bytes(oru("MAP1"))
    result = invoke("map", str(path))
    assert result.exit_code == 0
    (line,) = result.output.splitlines()
    assert json.loads(line) == {"jobData": map_oru(oru("MAP1").decode())[0].request.to_json()}


def test_map_refuses_what_it_cannot_map(tmp_path):
    adt = tmp_path / "adt.hl7"
    adt.write_bytes(oru("A1", msh9="ADT^A01"))
    result = CliRunner().invoke(main, ["map", str(adt)])
    assert result.exit_code == 2
    assert result.output.startswith("ri-gateway: MSH-9: ")
    text = tmp_path / "t.txt"
    text.write_text("just words")
    result = CliRunner().invoke(main, ["map", str(text)])
    assert (result.exit_code, result.output) == (
        2, f"ri-gateway: {text}: not an HL7 v2 message (it does not start with MSH)\n")


def test_analyze_plain_text_hl7_and_request_json(tmp_path):
    text = tmp_path / "report.txt"
    text.write_text("FINDINGS: Large left pneumothorax.")
    message = tmp_path / "m.hl7"
    message.write_bytes(oru("AN1"))
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"jobData": text_request("No pneumothorax.", TextMetadata())
                                   .to_json()}))
    result = invoke("analyze", str(text), str(message), str(request), "--sex", "female",
                    "--birth-date", "1960-02-14", "--procedure-code", "24627-2",
                    "--procedure-display", "CT Chest")
    assert result.exit_code == 0, result.output
    jobs = [json.loads(line) for line in result.output.splitlines()]
    assert [sorted(job) for job in jobs] == [
        ["createdAt", "expiresAt", "id", "result", "status", "updatedAt"]] * 3
    assert [job["status"] for job in jobs] == ["succeeded"] * 3
    assert [[i["kind"] for i in job["result"]["patientResults"][0]["inferences"]]
            for job in jobs] == [["criticalResult"], ["criticalResult"], []]
    assert jobs[0]["result"]["modelVersion"].startswith("fake-1/")


def test_analyze_plain_text_carries_the_metadata(tmp_path):
    seen = []

    class Recording(FakeEngine):
        def analyze(self, data):
            seen.append(data)
            return super().analyze(data)

    invoke("analyze", "-", "--sex", "male", "--birth-date", "1970-01-01", "--procedure-code",
           "24627-2", "--procedure-display", "CT Chest", obj={"engine_factory": Recording},
           input="Normal study.")
    patient = seen[0].patients[0]
    procedure = patient.patient_documents[0].administrative_metadata.ordered_procedures[0]
    assert (patient.details.sex, patient.details.birth_date) == ("male", "1970-01-01")
    assert (procedure.code.coding[0].system, procedure.code.coding[0].code,
            procedure.description) == ("http://loinc.org", "24627-2", "CT Chest")
    assert patient.patient_documents[0].content.value == "Normal study."


def test_analyze_jsonl_one_line_per_request_and_exit_codes(tmp_path):
    good = json.dumps(text_request("Pneumothorax.", TextMetadata()).to_json())
    refused = json.dumps(text_request("REFUSE this", TextMetadata()).to_json())
    lines = tmp_path / "requests.jsonl"
    lines.write_text(f"{good}\n\n{good}\n")
    result = invoke("analyze", "--jsonl", str(lines))
    assert result.exit_code == 0
    assert [json.loads(l)["status"] for l in result.output.splitlines()] == ["succeeded"] * 2

    lines.write_text(f"{good}\nnot json\n{refused}\n")
    result = CliRunner().invoke(
        main, ["analyze", "--jsonl", str(lines)], obj={"engine_factory": FakeEngine})
    assert result.exit_code == 2
    jobs = [json.loads(l) for l in result.stdout.splitlines()]
    assert [job["status"] for job in jobs] == ["succeeded", "failed", "failed"]
    assert jobs[2]["error"]["code"] == "BadRequest"

    crash = tmp_path / "crash.txt"
    crash.write_text("CRASH")
    result = CliRunner().invoke(
        main, ["analyze", str(crash)], obj={"engine_factory": FakeEngine})
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "InternalError"


def _audit_db(tmp_path):
    path = tmp_path / "audit.sqlite3"
    audit = AuditLog(str(path))
    for cid in ("T1", "T2", "T3"):
        mid = audit.record_received(ReceivedMessage(
            raw=b"MSH|", received_at=f"2024-01-15T10:00:0{cid[1]}.000Z", status="received",
            ack_code="AA", ack_payload=b"ack", control_id=cid, sending_application="RIS",
            sending_facility="HOSP", message_type="ORU^R01"))
    audit.record_event("analysed", "T3", mid, inferences=0)
    audit.close()
    return path


def test_audit_tail_and_show(tmp_path, local_zone):
    local_zone("Asia/Kolkata")
    db = _audit_db(tmp_path)
    result = invoke("audit", "tail", "-n", "2", "--json", "--db", str(db))
    lines = [json.loads(l) for l in result.output.splitlines()]
    assert [(l["event"], l["control_id"], l["message_type"], l["sender"], l["ack_code"])
            for l in lines] == [("received", "T3", "ORU^R01", "RIS^HOSP", "AA"),
                                ("analysed", "T3", "ORU^R01", "RIS^HOSP", "AA")]
    text = invoke("audit", "tail", "--db", str(db)).output.splitlines()
    # Text in local time with its offset, as one reads a log; JSON keeps UTC.
    assert len(text) == 4 and text[0].startswith("2024-01-15T15:30:01.000+05:30 received")
    assert lines[0]["time"].endswith("Z")

    shown = invoke("audit", "show", "T3", "--db", str(db))
    assert [json.loads(l)["event"] for l in shown.output.splitlines()] == ["received", "analysed"]
    missing = CliRunner().invoke(main, ["audit", "show", "NOPE", "--db", str(db)])
    assert missing.exit_code == 1 and "no message with control id NOPE" in missing.output
    absent = CliRunner().invoke(main, ["audit", "tail", "--db", str(tmp_path / "none.sqlite3")])
    assert absent.exit_code == 3


def test_audit_tail_follow_prints_new_events(tmp_path):
    db = _audit_db(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "audit", "tail", "-f", "-n", "1", "--json",
         "--interval", "0.05", "--db", str(db)],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        reader = LineReader(proc.stdout)
        reader.wait_for(lambda line: json.loads(line)["event"] == "analysed")
        writer = AuditLog(str(db))
        writer.record_event("delivered", "T1", 1, destination="ehr")
        line = reader.wait_for(lambda line: json.loads(line)["event"] == "delivered")
        assert json.loads(line)["destination"] == "ehr"
    finally:
        proc.terminate()
        proc.wait(WAIT)


def test_config_errors_exit_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nmax_batch = 0\n")
    result = CliRunner().invoke(main, ["audit", "tail", "--config", str(bad)])
    assert (result.exit_code, result.output) == (
        2, f"ri-gateway: storage.max_batch: must be greater than 0, got 0 (in {bad}, line 2)\n")


@pytest.mark.parametrize("args", [["send"], ["sink"], ["analyze"]])
def test_usage_errors_exit_2(args):
    assert CliRunner().invoke(main, args).exit_code == 2


def _corrupt(path):
    """Keep the header page (SQLite still opens the file) and garble every table page."""
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))


# Every command that reads or marks an existing audit database (serve alone creates one).
AUDIT_READERS = [
    ["audit", "tail"], ["audit", "show", "T3"], ["replay", "T3"], ["replay", "--status", "failed"],
    ["report", "quality"], ["report", "followups"], ["outbox", "list"],
    ["outbox", "retry", "--dead"], ["outbox", "retry", "1"],
    ["outbox", "purge", "--delivered", "--before", "2024-01-01"]]


def _refused(args, named):
    """Run a command on a bad database: exit 3 with one line naming the file."""
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    assert result.exit_code == 3, (args, result.output)
    assert result.output.startswith("ri-gateway: ") and named in result.output, result.output
    assert result.output.count("\n") == 1, result.output


# The outbox commands on a file that is no database: test_outbox_cli (this corrupt audit
# database has no outbox table, so it has no outbox to be corrupt either).
@pytest.mark.parametrize("args", [args for args in AUDIT_READERS if args[0] != "outbox"])
def test_commands_on_a_bad_audit_database_exit_3_naming_the_file(tmp_path, args):
    # Each ended in a sqlite3 traceback (exit 1) on a file that was not a database or
    # was corrupt, where `outbox list` already said why and exited 3.
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database, not even close to one" * 100)
    corrupt = _audit_db(tmp_path)
    _corrupt(corrupt)
    directory = tmp_path / "dir.sqlite3"
    directory.mkdir()
    config = tmp_path / "dir.toml"  # --db refuses a directory; the configuration does not
    config.write_text(f"[storage]\ndb = {json.dumps(str(directory))}\n")
    for where in (["--db", str(junk)], ["--db", str(corrupt)], ["--config", str(config)]):
        _refused([*args, *where], str(directory) if where[0] == "--config" else where[1])


def _files(tmp_path):
    return {path: path.read_bytes() if path.is_file() else None
            for path in tmp_path.rglob("*")}


@pytest.mark.parametrize("args", AUDIT_READERS)
def test_commands_refuse_a_path_that_is_no_audit_database_yet_and_leave_it_alone(tmp_path, args):
    # replay made an empty file, or another program's database, an audit database and then
    # found no message in it (exit 1, or 0 with --status); outbox list printed nothing, and
    # outbox retry and purge created their table in it and reported nothing to do.
    empty = tmp_path / "empty.sqlite3"
    empty.write_bytes(b"")
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.close()
    missing = tmp_path / "var" / "ri-gateway.sqlite3"
    for path in (empty, other, missing):
        before = _files(tmp_path)
        _refused([*args, "--db", str(path)], str(path))
        assert _files(tmp_path) == before, path


def _follow(db):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "audit", "tail", "-f", "-n", "1",
         "--interval", "0.05", "--db", str(db)],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LineReader(proc.stdout).wait_for(lambda line: "analysed" in line)
    return proc


def _ended(proc):
    try:
        proc.wait(WAIT)
    finally:
        proc.kill()
    return proc.returncode, proc.stderr.read()


def test_audit_tail_follow_ends_when_the_database_is_deleted(tmp_path):
    # It went on polling the deleted file forever, printing nothing.
    db = _audit_db(tmp_path)
    proc = _follow(db)
    for path in tmp_path.glob("audit.sqlite3*"):
        path.unlink()
    assert _ended(proc) == (3, f"ri-gateway: audit database {db} was deleted\n")


def test_audit_tail_follow_ends_when_the_database_is_replaced(tmp_path):
    db = _audit_db(tmp_path)
    proc = _follow(db)
    other = tmp_path / "other.sqlite3"
    AuditLog(str(other)).close()
    other.replace(db)
    assert _ended(proc) == (3, f"ri-gateway: audit database {db} was replaced by another file\n")


def test_audit_tail_follow_stopped_with_ctrl_c_exits_0_quietly(tmp_path):
    # Ctrl-C is how an admin stops following; it printed "Aborted!" and exited 1.
    proc = _follow(_audit_db(tmp_path))
    proc.send_signal(signal.SIGINT)
    assert _ended(proc) == (0, "")



def test_analyze_refuses_an_unpaired_surrogate_naming_the_field(tmp_path):
    # The real engine: its tokenizer could not encode the text, so the request failed as an
    # analysis failure (exit 1) where the REST API answers 400 naming the field.
    request = text_request("No acute findings. ", TextMetadata()).to_json()
    text = json.dumps({"jobData": request}).replace("No acute findings. ", "No acute \\ud800")
    path = tmp_path / "request.json"
    path.write_text(text)
    field = "jobData.patients[0].patientDocuments[0].content.value"
    result = CliRunner().invoke(main, ["analyze", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output == (f"ri-gateway: {path}: {field} holds an unpaired surrogate escape "
                             "(\\ud800), which is not a Unicode character\n")

    lines = tmp_path / "requests.jsonl"
    lines.write_text(text + "\n")
    result = CliRunner().invoke(main, ["analyze", "--jsonl", str(lines)])
    assert result.exit_code == 2
    assert f"{lines}:1: {field} holds an unpaired surrogate escape (\\ud800)" in result.stderr
    assert json.loads(result.stdout)["status"] == "failed"


@pytest.mark.parametrize("env, expected", [
    # Before named tables were read from the environment, the first two said
    # "destinations.pager_endpoint: must be a table".
    ({"RI_GATEWAY_DESTINATIONS_PAGER_ENDPONT": "tcp:host=127.0.0.1:port=6661"},
     "ri-gateway: RI_GATEWAY_DESTINATIONS_PAGER_ENDPONT: names no key of a [destinations.NAME] "
     "table (RI_GATEWAY_DESTINATIONS_<NAME>_<KEY>, KEY one of: ack_timeout, backoff_initial, "
     "backoff_max, backoff_multiplier, endpoint, jitter, lenient_end, max_attempts, "
     "receiving_application, receiving_facility)\n"),
    ({"RI_GATEWAY_DESTINATIONS_PAGER_MAX_ATTEMPTS": "lots"},
     "ri-gateway: destinations.pager.max_attempts: expected an integer, got 'lots' "
     "(set by RI_GATEWAY_DESTINATIONS_PAGER_MAX_ATTEMPTS)\n"),
    ({"RI_GATEWAY_ROUTES_ALL_RESULTS_SEND_EMPTY": "maybe"},
     "ri-gateway: routes.all_results.send_empty: expected true or false, got 'maybe' "
     "(set by RI_GATEWAY_ROUTES_ALL_RESULTS_SEND_EMPTY)\n"),
    ({"RI_GATEWAY_ROUTES_DESTINATIONS": "pager"},
     "ri-gateway: RI_GATEWAY_ROUTES_DESTINATIONS: names no key of a [routes.NAME] table "),
    # An env-only destination is a whole table: its endpoint is still required.
    ({"RI_GATEWAY_DESTINATIONS_PAGER_MAX_ATTEMPTS": "3"},
     "ri-gateway: destinations.pager.endpoint: is required ([destinations.pager] made by "
     "RI_GATEWAY_DESTINATIONS_PAGER_MAX_ATTEMPTS)\n"),
])
def test_named_table_environment_errors_exit_2(tmp_path, env, expected):
    result = CliRunner().invoke(main, ["audit", "tail", "--db", str(_audit_db(tmp_path))],
                                env=env)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(expected), result.output


@pytest.mark.parametrize("command", [
    ["--help"], ["send", "--help"], ["audit", "tail", "--help"], ["report", "critical", "--help"],
    ["outbox", "list", "--help"], ["replay", "--help"],
])
def test_commands_that_analyse_nothing_do_not_load_the_nlp_engine(command):
    # spaCy and the knowledge files cost about a second at every start: only the commands
    # that analyse (serve, analyze, evaluate) may pay it.
    probe = ("import sys, runpy; sys.argv = ['ri-gateway', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('gateway.cli', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('LOADED' if 'spacy' in sys.modules else 'NOT LOADED')")
    result = subprocess.run([sys.executable, "-c", probe, *command], cwd=ROOT, env=cli_env(),
                            capture_output=True, text=True, timeout=WAIT)
    assert result.stdout.strip().endswith("NOT LOADED"), result.stdout + result.stderr
