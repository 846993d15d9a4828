"""Configuration as an administrator meets it through the command line: every key settable
from the environment, and an invalid value reported with where it was given."""

from __future__ import annotations

import json

import pytest

from gateway_process import GatewayProcess, cli_env, exchange, run_cli
from test_pipeline_e2e import BASE, CRITICAL_TEXT, Rig, free_port, obx, oru, wait_for

# An ORU whose PID-3 holds an MR and, second, a PI of authority 1234.
TWO_IDS = ("MSH|^~\\&|RIS|GENHOSP|RIGW|GENHOSP|20240115101500||ORU^R01^ORU_R01|SRC1|P|2.5.1\r"
           "PID|1||MRN5001^^^GENHOSP^MR~PI777^^^1234^PI||TESTPATIENT^ALEX||19700101|M\r"
           "OBR|1|PL1|ACC1|71045^XR CHEST 1 VIEW^C4|||20240115100000\r"
           "OBX|1|TX|18782-3^Radiology Study observation^LN||FINDINGS: Normal chest.||||||F\r")


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def _serve_once(tmp_path, toml: str | None = None, **env: str):
    """``serve`` with a configuration it should refuse; a loopback port if it does not."""
    args = ["serve", "--db", str(tmp_path / "var" / "a.sqlite3")]
    if toml is not None:
        (tmp_path / "gateway.toml").write_text(toml)
        args += ["--config", str(tmp_path / "gateway.toml")]
    return run_cli(*args, env=cli_env(RI_GATEWAY_MLLP_ENDPOINT="tcp:0:interface=127.0.0.1",
                                      **env))


def test_a_bad_value_in_the_file_names_the_file_and_its_line(tmp_path):
    result = _serve_once(tmp_path, '[mllp]\nlenient_end = false\n\n[analysis]\n'
                                   'quiet_period = 0.1\nworker_priority = "high"\n')
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "ri-gateway: analysis.worker_priority: must be one of idle, low, normal; got 'high' "
        f"(in {tmp_path / 'gateway.toml'}, line 6)\n")


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path):
    # The file's value is valid: an error naming only the key sent the reader to the file.
    result = _serve_once(tmp_path, "[mllp]\nmax_frame_size = 1000\n",
                         RI_GATEWAY_MLLP_MAX_FRAME_SIZE="1M")
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("ri-gateway: mllp.max_frame_size: expected an integer, got '1M' "
                              "(set by RI_GATEWAY_MLLP_MAX_FRAME_SIZE)\n")
    result = _serve_once(tmp_path, RI_GATEWAY_DESTINATIONS_PAGER_ACK_TIMEOUT="5")
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("ri-gateway: destinations.pager.endpoint: is required "
                             "([destinations.pager] made by "
                             "RI_GATEWAY_DESTINATIONS_PAGER_ACK_TIMEOUT)\n")


def test_a_route_to_a_missing_destination_stops_serve_before_it_creates_the_database(tmp_path):
    result = _serve_once(tmp_path, '[routes.all]\ntype = "results"\ndestinations = ["ehr"]\n')
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("ri-gateway: routes.all.destinations: names unknown destination "
                             f"'ehr' (in {tmp_path / 'gateway.toml'}, line 3)\n")
    assert not (tmp_path / "var").exists()


def _patient_id(*env_items: tuple[str, str], tmp_path) -> str:
    (tmp_path / "two_ids.hl7").write_text(TWO_IDS)
    result = run_cli("map", str(tmp_path / "two_ids.hl7"), env=cli_env(**dict(env_items)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[0])["jobData"]["patients"][0]["id"]


def test_mappings_keys_from_the_environment_are_read_as_their_type(tmp_path):
    assert _patient_id(tmp_path=tmp_path) == "MRN5001"
    # A list, comma-separated as in every other section (was: "expected a list of strings").
    assert _patient_id(("RI_GATEWAY_MAPPINGS_PATIENT_ID_TYPES", "PI, MR"),
                       tmp_path=tmp_path) == "PI777"
    # Text that reads as a number is text (was: "expected a string").
    assert _patient_id(("RI_GATEWAY_MAPPINGS_PATIENT_ID_AUTHORITY", "1234"),
                       tmp_path=tmp_path) == "PI777"
    # true/false words as for the other sections' switches.
    assert _patient_id(("RI_GATEWAY_MAPPINGS_USE_PROCEDURE_TABLE", "no"),
                       tmp_path=tmp_path) == "MRN5001"


def test_an_unknown_outbound_identifier_variable_names_the_keys(tmp_path):
    result = _serve_once(tmp_path, RI_GATEWAY_OUTBOUND_IDENTIFIERS_CRITICAL="X^Y^Z")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "ri-gateway: RI_GATEWAY_OUTBOUND_IDENTIFIERS_CRITICAL: names no key of "
        "[outbound.identifiers] (KEY one of: acknowledged, ageMismatch, "), result.stderr
    assert "criticalResult" in result.stderr


def test_outbound_identifiers_from_the_environment_reach_the_alert(rig):
    pager, mllp = free_port(), free_port()
    rig.sink("pager", pager)
    rig.env.update({"RI_GATEWAY_OUTBOUND_IDENTIFIERS_CRITICALRESULT": "CRIT^Critical finding^LOCAL",
                    "RI_GATEWAY_OUTBOUND_IDENTIFIERS_MISSING_BODY_PART": "MISS^Missing^LOCAL"})
    rig.serve(BASE + f"""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port={pager}"

[routes.critical]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical"]
""", mllp)
    sent = rig.send(mllp, "crit", oru("IDENT0001", "ACC1", "MRN5001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    alert = wait_for("the alert", lambda: rig.received("pager"))[0]
    assert {row[3] for row in obx(alert) if row[8] == "AA"} == {"CRIT^Critical finding^LOCAL"}


def test_a_variable_overrides_a_table_whose_name_has_hyphens(rig):
    # Variable names cannot hold "-": RI_GATEWAY_ROUTES_CRITICAL_TO_PAGER_... made a second
    # route, critical_to_pager, of type "results", beside the file's alert route.
    backup, mllp = free_port(), free_port()
    rig.sink("backup", backup)
    rig.env["RI_GATEWAY_ROUTES_CRITICAL_TO_PAGER_DESTINATIONS"] = "backup-pager"
    rig.serve(BASE + f"""
[destinations.pager]
endpoint = "tcp:host=127.0.0.1:port={free_port()}"

[destinations.backup-pager]
endpoint = "tcp:host=127.0.0.1:port={backup}"

[routes.critical-to-pager]
type = "alerts"
destinations = ["pager"]
alert_on = ["critical"]
""", mllp)
    sent = rig.send(mllp, "crit", oru("HYPH0001", "ACC1", "MRN5001", CRITICAL_TEXT))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_for("the alert", lambda: rig.received("backup"))
    listed = rig.run("outbox", "list", "--json", "--db", rig.db)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["destination"], r["route"], r["purpose"]) for r in rows] == [
        ("backup-pager", "critical-to-pager", "alerts")]


def test_strict_validation_names_the_field_at_fault_and_not_its_value(tmp_path):
    gateway = GatewayProcess(tmp_path / "audit.sqlite3",
                             RI_GATEWAY_MAPPINGS_VALIDATION="strict").start()
    try:
        valid = TWO_IDS.replace("SRC1", "STRICT1")
        assert b"MSA|AA|STRICT1" in exchange(gateway.port, valid.encode())
        # PID-7 (a date) holds a name; the second OBX-1 (a sequence number) a letter.
        for control_id, message, location, err in [
            ("STRICT2", valid.replace("|19700101|", "|1970QUIMBY|"), "PID-7", "PID^1^7"),
            ("STRICT3", valid + "OBX|B2|TX|18782-3^Radiology^LN||More.||||||F\r",
             "OBX[2]-1", "OBX^2^1")]:
            ack = exchange(gateway.port, message.replace("STRICT1", control_id).encode()).decode()
            msa, err_segment = ack.split("\r")[1:3]
            assert msa == (f"MSA|AE|{control_id}|{location} does not validate against HL7 "
                           "v2.5.1 (ValueError)"), ack
            # Was MSH^1^9 whatever the field: the sender's admin looked at the message type.
            assert err_segment.split("|")[2] == err, ack
            assert "QUIMBY" not in ack
    finally:
        gateway.stop()
    assert "QUIMBY" not in "".join(gateway.output.seen)


@pytest.mark.parametrize("roots, reason", [("missing-dir", "No such file or directory"),
                                           ("gateway.toml", "Not a directory")])
def test_a_tls_destination_with_unusable_trust_roots_says_why(tmp_path, roots, reason):
    # Twisted's error has no text: the message ended with "...trustRoots=DIR': ".
    endpoint = f"tls:host=127.0.0.1:port=6662:trustRoots={tmp_path / roots}"
    result = _serve_once(tmp_path, f'[destinations.ris]\nendpoint = "{endpoint}"\n')
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"ri-gateway: destinations.ris.endpoint: invalid Twisted client endpoint '{endpoint}': "
        f"trustRoots {tmp_path / roots}: {reason} (in {tmp_path / 'gateway.toml'}, line 2)\n")
