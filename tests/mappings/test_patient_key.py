"""mappings.patient_key: which patients a message is about, read without mapping it."""

from __future__ import annotations

from mappings.patient_key import patient_keys


def test_each_pid_names_a_patient_of_the_sender_once():
    text = ("MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|C1|P|2.5.1\r"
            "PID|1||M1^^^H^MR~99^^^SSA||DOE\rOBR|1\rOBX|1|TX|X||PID|1||NOT A SEGMENT\r"
            "PID|2||M2\rOBR|2\rPID|3||M1^^^H^MR~99^^^SSA\rOBR|3\r")
    assert patient_keys(text) == (("RIS", "HOSP", "M1^^^H^MR~99^^^SSA"), ("RIS", "HOSP", "M2"))


def test_line_ends_padding_and_other_delimiters_are_read_as_the_mapping_reads_them():
    assert patient_keys("\r\n MSH|^~\\&|RIS|HOSP\r\nPID|1||M1\nOBR|1\n") == (("RIS", "HOSP", "M1"),)
    assert patient_keys("MSH#^~\\&#LAB#EAST\rPID#1##M9\r") == (("LAB", "EAST", "M9"),)


def test_no_patient_identifier_or_no_message_names_no_patient():
    assert patient_keys("MSH|^~\\&|RIS|HOSP\rPID|1||\rOBR|1\r") == ()
    assert patient_keys("MSH|^~\\&|RIS|HOSP\rOBR|1\r") == ()
    assert patient_keys("") == () and patient_keys("not hl7") == ()
