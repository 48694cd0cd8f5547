#!/usr/bin/python3
"""Writes the event_detector parity cases from the Artisan fixtures (tests/fixtures/artisan-alog).

Each case is one recording: time, BT, ET (rounded to 0.1 °) and, for the `*-state` cases, the
Bullet R1's state channel. The `*-bt` cases drop the state channel, so a detector must find
CHARGE and DROP from BT alone. Run from the repository root: tests/parity/event_detector/make_cases.py
"""
import ast
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests/fixtures/artisan-alog"
OUT = pathlib.Path(__file__).resolve().parent / "cases"
PICK = ["26-02-01_1812_Jigesa_no2.alog", "26-04-12_sidamo_no42.alog", "26-05-30_suica_no53.alog"]


def main():
    OUT.mkdir(exist_ok=True)
    for name in PICK:
        log = ast.literal_eval((FIXTURES / name).read_text())
        stem = name.removesuffix(".alog")
        state = None
        for k, n in enumerate(log.get("extraname1", [])):
            if n == "State":
                state = log["extratemp1"][k]
        base = {
            "unit": log.get("mode", "C"),
            "phases": log.get("phases", [150, 150, 200, 230]),
            "time": [round(t, 2) for t in log["timex"]],
            "bt": [round(v, 1) for v in log["temp2"]],
            "et": [round(v, 1) for v in log["temp1"]],
        }
        for variant in ("state", "bt"):
            case = {"name": f"{stem}-{variant}", **base}
            if variant == "state":
                if state is None:
                    continue
                case["state"] = state
            (OUT / f"{stem}-{variant}.json").write_text(json.dumps(case, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
