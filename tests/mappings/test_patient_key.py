"""mappings.patient_key: which patients a message is about, read without mapping it."""

from __future__ import annotations

from mappings.patient_key import patient_keys


def test_each_identifier_of_each_pid_names_a_patient_once():
    text = ("MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|C1|P|2.5.1\r"
            "PID|1||M1^^^H^MR~99^^^SSA||DOE\rOBR|1\rOBX|1|TX|X||PID|1||NOT A SEGMENT\r"
            "PID|2||M2\rOBR|2\rPID|3||M1^^^H^MR~99^^^SSA\rOBR|3\r")
    assert patient_keys(text) == ("M1", "99", "M2")


def test_one_identifier_written_with_or_without_its_authority_is_one_key():
    # A correction that names the authority its report left out, or gives its OID too,
    # must wait for that report: two keys for one patient let it overtake the report.
    def keys(pid3, sender="RIS|HOSP"):
        return patient_keys(f"MSH|^~\\&|{sender}|RIGW|HOSP|20240115||ORU^R01|C1|P|2.5\r"
                            f"PID|1||{pid3}\rOBR|1\r")

    assert keys("123") == keys("123^^^HOSP") == keys("123^^^HOSP^MR", "PACS|EAST") == ("123",)
    assert keys("MRN1^^^GENHOSP^MR") == keys("MRN1^^^GENHOSP&1.2.3.4&ISO^MR") == ("MRN1",)


def test_line_ends_padding_and_other_delimiters_are_read_as_the_mapping_reads_them():
    assert patient_keys("\r\n MSH|^~\\&|RIS|HOSP\r\nPID|1||M1\nOBR|1\n") == ("M1",)
    assert patient_keys("MSH#$%\\&#LAB#EAST\rPID#1##M9$$$E%7$$$F\r") == ("M9", "7")


def test_pid2_or_pid4_name_the_patient_when_pid3_has_no_identifier():
    assert patient_keys("MSH|^~\\&|RIS|HOSP\rPID|1|OLD7|^^^H|ALT\rOBR|1\r") == ("OLD7",)
    assert patient_keys("MSH|^~\\&|RIS|HOSP\rPID|1|||ALT^^^H\rOBR|1\r") == ("ALT",)


def test_no_patient_identifier_or_no_message_names_no_patient():
    assert patient_keys("MSH|^~\\&|RIS|HOSP\rPID|1||\rOBR|1\r") == ()
    assert patient_keys("MSH|^~\\&|RIS|HOSP\rOBR|1\r") == ()
    assert patient_keys("") == () and patient_keys("not hl7") == ()


def test_an_explicit_null_pid3_names_the_patient_by_pid2_as_an_empty_one_does():
    # PID-3 sent as "" (HL7's explicit null) has no identifier: the report keyed by "" and
    # its correction keyed by PID-2 were two patients, and the correction could overtake it.
    empty = patient_keys('MSH|^~\\&|RIS|HOSP\rPID|1|EXT7|\rOBR|1\r')
    null = patient_keys('MSH|^~\\&|RIS|HOSP\rPID|1|EXT7|""\rOBR|1\r')
    assert null == empty == ("EXT7",)
    assert patient_keys('MSH|^~\\&|RIS|HOSP\rPID|1||M1~""\rOBR|1\r') == ("M1",)
