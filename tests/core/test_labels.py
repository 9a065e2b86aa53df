import pandas as pd
import pytest

from moe_ids.core.labels import FAMILIES, attempted_mask, clean_label, encode, family_of, is_attempted


@pytest.mark.parametrize(
    "raw, clean, family",
    [
        ("BENIGN", "BENIGN", None),
        ("Web Attack \ufffd Brute Force", "Web Attack - Brute Force", "WebAttack"),
        ("Web Attack \x96 Sql Injection", "Web Attack - SQL Injection", "WebAttack"),
        ("FTP-Patator", "FTP-Patator", "BruteForce"),
        ("DDoS", "DDoS", "DDoS"),
        ("DoS slowloris", "DoS slowloris", "DoS"),
        ("Portscan", "PortScan", "PortScan"),
        ("Infiltration - Portscan", "Infiltration - Portscan", "PortScan"),
        ("Bot", "Botnet", "Botnet"),
        ("Heartbleed", "Heartbleed", "Heartbleed"),
        ("Infiltration", "Infiltration", "Infiltration"),
        # CSE-CIC-IDS2018
        ("Benign", "BENIGN", None),
        ("FTP-BruteForce", "FTP-BruteForce", "BruteForce"),
        ("SSH-Bruteforce", "SSH-Bruteforce", "BruteForce"),
        ("Brute Force -Web", "Web Attack - Brute Force", "WebAttack"),
        ("Brute Force -XSS", "Web Attack - XSS", "WebAttack"),
        ("SQL Injection", "Web Attack - SQL Injection", "WebAttack"),
        ("DoS attacks-Hulk", "DoS attacks-Hulk", "DoS"),
        ("DoS attacks-SlowHTTPTest", "DoS attacks-SlowHTTPTest", "DoS"),
        ("DDOS attack-HOIC", "DDOS attack-HOIC", "DDoS"),
        ("DDoS attacks-LOIC-HTTP", "DDoS attacks-LOIC-HTTP", "DDoS"),
        ("Infilteration", "Infiltration", "Infiltration"),
        # the corrected releases' attempted attacks keep their suffix on the canonical name
        ("DoS Hulk - Attempted", "DoS Hulk - Attempted", "DoS"),
        ("Web Attack \u2013 Brute Force - Attempted", "Web Attack - Brute Force - Attempted", "WebAttack"),
        ("Portscan -Attempted", "PortScan - Attempted", "PortScan"),
        ("Bot - attempted", "Botnet - Attempted", "Botnet"),
        # IoT-23's detailed labels
        ("PartOfAHorizontalPortScan", "PartOfAHorizontalPortScan", "PortScan"),
        ("C&C-HeartBeat", "C&C-HeartBeat", "Botnet"),
        ("Okiru", "Okiru", "Botnet"),
        ("DDoS", "DDoS", "DDoS"),
        ("FileDownload", "FileDownload", None),
        # CIC-DDoS2019
        ("DrDoS_DNS", "DrDoS_DNS", "DDoS"),
        ("UDP-lag", "UDP-lag", "DDoS"),
        ("Syn", "Syn", "DDoS"),
        ("WebDDoS", "WebDDoS", "DDoS"),
    ],
)
def test_clean_and_family(raw, clean, family):
    assert clean_label(raw) == clean
    assert family_of(clean) == family


def test_encode():
    cleaned, binary, family = encode(pd.Series(["BENIGN", "DDoS", "1", "0"]))
    assert binary.tolist() == [0, 1, 1, 0]
    assert family.tolist() == [-1, FAMILIES.index("DDoS"), -1, -1]


def test_only_the_suffix_marks_an_attempted_attack() -> None:
    assert is_attempted(clean_label("FTP-Patator - Attempted"))
    assert not is_attempted(clean_label("Infiltration - Portscan"))  # a real attack with a dash in its name
    assert not is_attempted(clean_label("Attempted"))  # no attack named: an unknown label, not an attempt
    labels = [clean_label(r) for r in ("BENIGN", "Bot - Attempted", "Infiltration - Portscan", "DoS Hulk -Attempted")]
    assert attempted_mask(labels).tolist() == [False, True, False, True]
    assert attempted_mask([]).tolist() == []
