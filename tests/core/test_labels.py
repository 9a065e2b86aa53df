import pandas as pd
import pytest

from moe_ids.core.labels import FAMILIES, clean_label, encode, family_of


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
    ],
)
def test_clean_and_family(raw, clean, family):
    assert clean_label(raw) == clean
    assert family_of(clean) == family


def test_encode():
    cleaned, binary, family = encode(pd.Series(["BENIGN", "DDoS", "1", "0"]))
    assert binary.tolist() == [0, 1, 1, 0]
    assert family.tolist() == [-1, FAMILIES.index("DDoS"), -1, -1]
