"""Gate verdicts on hand-made stage tables."""

import json

import pandas as pd
import pytest

from mmgate import gates as G

T = G.Thresholds()


def generated(oor_constrained=0, wrong=0, end_rate=0.75, n=4):
    rows = []
    for mode, oor in (("constrained", oor_constrained), ("free", 5)):
        for i in range(n):
            rows.append({"mode": mode, "out_of_range": oor, "out_of_range_pct": 100.0 * oor / 40, "wrong_slot": wrong if mode == "constrained" else 2,
                         "emitted_end": i < end_rate * n, "end_position": 40, "expected_len": 40})
    return pd.DataFrame(rows)


def ablation(win_shuffled=0.9, win_empty=0.9, delta_shuffled=0.3, delta_empty=0.2, n=300):
    return pd.DataFrame([
        {"condition": "shuffled", "n": n, "mean_loss_correct": 1.0, "mean_loss": 1 + delta_shuffled, "delta": delta_shuffled,
         "delta_ci_low": delta_shuffled - 0.05, "delta_ci_high": delta_shuffled + 0.05, "win_rate": win_shuffled,
         "win_rate_ci_low": win_shuffled - 0.05, "win_rate_ci_high": min(1, win_shuffled + 0.05)},
        {"condition": "empty", "n": n, "mean_loss_correct": 1.0, "mean_loss": 1 + delta_empty, "delta": delta_empty,
         "delta_ci_low": delta_empty - 0.05, "delta_ci_high": delta_empty + 0.05, "win_rate": win_empty,
         "win_rate_ci_low": win_empty - 0.05, "win_rate_ci_high": min(1, win_empty + 0.05)},
    ])


def read_ablation(delta=0.5, win=0.95):
    return pd.DataFrame([{"condition": c, "n": 300, "mean_loss_correct": 0.1, "mean_loss": 0.1 + delta, "delta": delta, "win_rate": win}
                         for c in ("shuffled", "zero", "noise")])


def test_p01_passes_when_every_artifact_matches_and_fails_otherwise():
    check = pd.DataFrame({"kind": ["a", "b"], "name": ["x", "y"], "source": ["s", "t"], "match": [True, True]})
    assert G.gate_p01(check).verdict == G.PASS
    check.loc[1, "match"] = False
    gate = G.gate_p01(check)
    assert gate.verdict == G.FAIL and gate.values["mismatches"] == 1 and gate.fix


def test_p02_fails_on_one_out_of_range_token_in_the_constrained_run():
    assert G.gate_p02({"t2a": generated(), "t2i": generated()}, T).verdict == G.PASS
    gate = G.gate_p02({"t2a": generated(oor_constrained=1), "t2i": generated()}, T)
    assert gate.verdict == G.FAIL and "constrained decoding" in gate.fix
    assert gate.values["t2i"]["free_needs_constraint"] is True


def test_p02_fails_on_a_wrong_slot():
    assert G.gate_p02({"t2a": generated(wrong=1)}, T).verdict == G.FAIL


def test_a_task_missing_from_the_golden_set_is_skipped_not_failed():
    gate = G.gate_p02({"t2a": generated()}, T)
    assert gate.verdict == G.PASS and gate.values["t2i"].startswith("SKIP")
    assert G.gate_p02({}, T).verdict == G.SKIP and G.gate_p13({}, T).verdict == G.SKIP


def test_p03_needs_every_sample_to_decode():
    ok = pd.DataFrame({"ok": [True] * 4, "reason": [None] * 4})
    assert G.gate_p03({"t2a": ok}, T).verdict == G.PASS
    bad = pd.DataFrame({"ok": [True, False], "reason": [None, "too short: 3 of 8"]})
    gate = G.gate_p03({"t2a": bad}, T)
    assert gate.verdict == G.FAIL and gate.values["t2a"]["failures_by_reason"] == {"too short": 1}


def test_p04_passes_with_the_checklist_thresholds():
    assert G.gate_p04({"t2a": ablation(), "t2i": ablation()}, T).verdict == G.PASS


@pytest.mark.parametrize("change", [dict(win_shuffled=0.69), dict(win_empty=0.79), dict(delta_shuffled=-0.01)])
def test_p04_fails_below_any_threshold(change):
    assert G.gate_p04({"t2a": ablation(**change), "t2i": ablation()}, T).verdict == G.FAIL


def test_p04_needs_delta_empty_of_010_for_at_least_one_write_task():
    assert G.gate_p04({"t2a": ablation(delta_empty=0.05), "t2i": ablation(delta_empty=0.11)}, T).verdict == G.PASS
    gate = G.gate_p04({"t2a": ablation(delta_empty=0.05), "t2i": ablation(delta_empty=0.09)}, T)
    assert gate.verdict == G.FAIL and "delta_empty is below 0.1" in gate.detail


def test_p04_warns_when_n_is_below_256():
    gate = G.gate_p04({"t2a": ablation(n=64), "t2i": ablation(n=64)}, T)
    assert gate.verdict == G.WARN and "N < 256" in gate.detail


def test_p11_warns_below_the_end_rate():
    assert G.gate_p11({"t2a": generated(end_rate=0.75)}, T).verdict == G.PASS
    gate = G.gate_p11({"t2a": generated(end_rate=0.25)}, T)
    assert gate.verdict == G.WARN and gate.values["t2a"]["end_rate"] == 0.25


def test_p12_fails_when_zero_or_noise_input_is_as_good_as_the_real_one():
    assert G.gate_p12({"a2t": read_ablation(), "i2t": read_ablation()}, T).verdict == G.PASS
    assert G.gate_p12({"a2t": read_ablation(delta=0.01), "i2t": read_ablation()}, T).verdict == G.FAIL


def collapse_row(**change):
    row = {"n": 100, "unique_outputs": 100, "unique_ratio": 1.0, "near_duplicate_pairs": 0, "near_duplicate_share": 0.0,
           "silent_share": 0.0, "noise_share": 0.0, "loop_share": 0.0, "collapsed": False}
    row.update(change)
    return pd.DataFrame([row])


@pytest.mark.parametrize("change,problem", [(dict(collapsed=True, unique_ratio=0.01), "identical or near-identical outputs"),
                                            (dict(silent_share=0.02), "silence"), (dict(noise_share=0.5), "noise"),
                                            (dict(loop_share=0.3), "repetition loops")])
def test_p13_names_the_collapse_it_finds(change, problem):
    assert G.gate_p13({"t2a": collapse_row()}, T).verdict == G.PASS
    gate = G.gate_p13({"t2a": collapse_row(**change)}, T)
    assert gate.verdict == G.FAIL and gate.values["t2a"]["problems"] == [problem]


def test_overall_verdict():
    make = lambda **v: [G.Gate(g, v.get(g.replace(".", ""), G.PASS)) for g in G.P0 + G.P1]
    assert G.overall(make()) == "ready to promote"
    assert G.overall(make(P13=G.FAIL)) == "valid trial"
    assert G.overall(make(P04=G.FAIL)) == "not valid"
    assert G.overall(make(P04=G.WARN)) == "ready to promote"


def test_gates_table_is_one_row_per_gate_with_json_values():
    table = G.gates_table([G.gate_p01(pd.DataFrame({"kind": [], "name": [], "source": [], "match": []}))])
    assert table["gate"].tolist() == ["P0.1"] and json.loads(table["values"][0]) == {"artifacts": 0, "mismatches": 0}
