"""Gate verdicts on hand-made stage tables: each criterion, its reason with numbers, and the registry."""

import json

import numpy as np
import pandas as pd
import pytest

from mmgate import gates as G
from mmgate.io import strict_json

T = G.Thresholds()


def generated(n=300, free_oor=0, free_wrong=0, cons_oor=0, cons_wrong=0, end_rate=0.75, removed=0.01, tokens=40,
              modes=("free", "constrained")):
    rows = []
    for mode in modes:
        oor, wrong = (free_oor, free_wrong) if mode == "free" else (cons_oor, cons_wrong)
        for i in range(n):
            rows.append({"sample_id": f"s{i}", "mode": mode, "n_generated": tokens, "out_of_range": oor, "wrong_slot": wrong,
                         "out_of_range_pct": 100.0 * oor / tokens, "first_violation": 7 if oor + wrong else None,
                         "emitted_end": i < end_rate * n, "end_position": tokens, "expected_len": tokens,
                         "removed_mass_mean": removed if mode == "constrained" else None,
                         "removed_mass_max": 2 * removed if mode == "constrained" else None})
    return pd.DataFrame(rows)


def ablation(win_shuffled=0.9, win_empty=0.9, delta_shuffled=0.3, delta_empty=0.2, n=300, ci=0.05):
    return pd.DataFrame([
        {"condition": c, "n": n, "mean_loss_correct": 1.0, "mean_loss": 1 + d, "delta": d, "delta_ci_low": d - ci,
         "delta_ci_high": d + ci, "win_rate": w, "win_rate_ci_low": w - 0.05, "win_rate_ci_high": min(1, w + 0.05)}
        for c, w, d in (("shuffled", win_shuffled, delta_shuffled), ("empty", win_empty, delta_empty))])


def read_ablation(delta=0.5, win=0.95, n=300):
    return pd.DataFrame([{"condition": c, "n": n, "mean_loss_correct": 0.1, "mean_loss": 0.1 + delta, "delta": delta,
                          "delta_ci_low": delta - 0.05, "delta_ci_high": delta + 0.05, "win_rate": win}
                         for c in ("shuffled", "zero", "noise")])


def collapse_row(**change):
    row = {"n": 300, "unique_outputs": 300, "unique_ratio": 1.0, "near_duplicate_pairs": 0, "near_duplicate_share": 0.0,
           "silent_share": 0.0, "noise_share": 0.0, "loop_share": 0.0, "collapsed": False}
    row.update(change)
    return pd.DataFrame([row])


def judge(gate_id, tables, t=T):
    return G.judge_gate(G.spec_of(gate_id), tables, t)


# P0.1 ------------------------------------------------------------------------------------------------

def check_table(match=(True, True)):
    return pd.DataFrame({"kind": ["tokenizer", "checkpoint"], "name": ["<aud_end>", "good"], "source": ["s", "t"],
                         "expected": ["36", "ab" * 32], "found": ["37", "ab" * 32], "match": list(match)})


def test_p01_passes_when_every_artifact_matches():
    assert judge("P0.1", {"check": {G.ALL: check_table()}}).verdict == G.PASS


def test_p01_fails_with_one_reason_per_mismatching_artifact():
    gate = judge("P0.1", {"check": {G.ALL: check_table((False, True))}})
    assert gate.verdict == G.FAIL and gate.values[G.ALL]["mismatches"] == 1
    assert gate.reasons == ["tokenizer <aud_end>, s: expected 36, found 37"] and gate.fixes


def test_a_p01_failure_skips_every_other_gate_as_blocked():
    tables = {"check": {G.ALL: check_table((False, True))}, "generate": {"t2a": generated()}}
    gates = G.evaluate(tables, T)
    assert [g.gate for g in gates] == list(G.GATE_IDS)
    assert gates[0].verdict == G.FAIL and all(g.verdict == G.SKIP for g in gates[1:])
    assert all(g.reasons == ["blocked by P0.1: the token space does not match"] for g in gates[1:])
    assert G.overall(gates) == G.NOT_VALID


# P0.2 ------------------------------------------------------------------------------------------------

def test_p02_passes_when_the_free_run_stays_in_range_and_slot():
    assert judge("P0.2", {"generate": {"t2a": generated(), "t2i": generated()}}).verdict == G.PASS


def test_p02_warns_free_runs_need_the_constraint_when_the_free_run_drifts():
    gate = judge("P0.2", {"generate": {"t2a": generated(free_oor=4, free_wrong=26)}})
    assert gate.verdict == G.WARN
    values = gate.values["t2a"]
    assert values["free_violation_pct"] == pytest.approx(75.0) and values["free_wrong_slot_pct"] == pytest.approx(65.0)
    assert gate.reasons == ["t2a: free run: 75 % of tokens violate (> 0.0 %): 10 % out of range, 65 % wrong slot, in "
                            "100 % of samples, median first violation at token 7: free runs need constrained decoding"]
    assert "constrained decoding" in gate.fix
    assert G.overall_note([gate]) == "free runs need constrained decoding"
    assert G.overall_line({"overall": G.READY, "gates": [gate.as_dict()]}) == "ready to promote; free runs need constrained decoding"


def verdict_gate(gate_id: str, verdict: str, **task_verdicts: str) -> G.Gate:
    return G.Gate(gate_id, G.spec_of(gate_id).tier, "", verdict, task_verdicts=task_verdicts)


def test_the_overall_line_names_the_p0_gate_that_decided_it_first():
    gates = [verdict_gate("P0.2", G.WARN), verdict_gate("P0.4", G.FAIL, t2a=G.FAIL, t2i=G.FAIL),
             verdict_gate("P1.2", G.FAIL, a2t=G.FAIL, i2t=G.PASS)]
    gates[0].failures = ["free_violation"]
    report = {"overall": G.overall(gates), "gates": [g.as_dict() for g in reversed(gates)]}
    assert G.overall_line(report) == "not valid: P0.4 failed (t2a, t2i), P1.2 failed (a2t); free runs need constrained decoding"


def test_the_overall_line_names_a_p0_gate_that_could_not_run():
    gates = [verdict_gate("P0.3", G.SKIP), verdict_gate("P1.1", G.PASS, t2a=G.PASS)]
    assert G.overall_line({"overall": G.overall(gates), "gates": [g.as_dict() for g in gates]}) == "unverified: P0.3 not run"


def test_a_gate_records_the_verdict_of_each_task():
    gate = judge("P0.2", {"generate": {"t2a": generated(), "t2i": generated(cons_oor=5)}})
    assert gate.task_verdicts == {"t2a": G.PASS, "t2i": G.FAIL} and gate.as_dict()["task_verdicts"] == gate.task_verdicts


def test_p02_counts_wrong_slot_tokens_in_the_headline_percentage():
    gate = judge("P0.2", {"generate": {"t2a": generated(free_wrong=2)}})
    assert gate.verdict == G.WARN and gate.values["t2a"]["free_violation_pct"] == pytest.approx(5.0)


def test_p02_fails_a_drifting_free_run_when_free_compliance_is_required():
    strict = G.Thresholds(require_free_compliance=True)
    assert judge("P0.2", {"generate": {"t2a": generated(free_oor=1)}}, strict).verdict == G.FAIL


def test_p02_fails_when_the_constrained_run_violates():
    gate = judge("P0.2", {"generate": {"t2a": generated(cons_wrong=1)}})
    assert gate.verdict == G.FAIL and "constrained run: 2.5 % of tokens" in gate.reasons[0]


def test_p02_fails_when_the_constraint_removes_too_much_probability():
    gate = judge("P0.2", {"generate": {"t2a": generated(removed=0.45)}})
    assert gate.verdict == G.FAIL
    assert gate.reasons == ["t2a: removed_mass_mean 0.45 > 0.2: the constraint removed 45 % of the model's probability "
                            "per step on average (max 0.9)"]


def test_p02_never_passes_on_the_constrained_run_alone():
    gate = judge("P0.2", {"generate": {"t2a": generated(modes=("constrained",))}})
    assert gate.verdict == G.WARN and "no free-mode run" in gate.reasons[0]


def with_slots(frame, matrix, other=None, layout="frame_major", mode="free"):
    """`frame` with every `mode` row's tokens falling as `matrix` [K expected, K + 1 actual] says."""
    frame = frame.copy()
    rows = frame["mode"] == mode
    frame["slot_counts"] = None
    frame["other_layout_slots"] = None
    frame["layout"] = layout
    frame.loc[rows, "slot_counts"] = pd.Series([list(map(int, np.ravel(matrix)))] * int(rows.sum()), index=frame.index[rows])
    frame.loc[rows, "other_layout_slots"] = other
    return frame


def rotated(k=4, by=1, tokens=10, stray=0):
    matrix = np.zeros((k, k + 1), dtype=int)
    for e in range(k):
        matrix[e, (e + by) % k] = tokens - stray
        matrix[e, e] += stray
    return matrix


def test_p02_fails_naming_a_codebook_rotation_that_constrained_decoding_hides():
    frame = with_slots(generated(free_wrong=40, removed=0.01), rotated())
    gate = judge("P0.2", {"generate": {"t2a": frame}})
    assert gate.verdict == G.FAIL and "layout" in gate.failures
    reason = next(r for r in gate.reasons if "rotated" in r)
    assert ("slot CB0 holds CB1's codes in 100 % of tokens (codebooks rotated by 1; 100 % of tokens in range): the layout "
            "or codebook order of Stage-2 tokenization differs from token_space.json") in reason
    assert gate.values["t2a"]["slot_confusion"][0] == {"expected_slot": "CB0", "CB0": 0, "CB1": 3000, "CB2": 0, "CB3": 0,
                                                       "out_of_range": 0}


def test_p02_names_a_permutation_of_codebooks_slot_by_slot():
    matrix = np.zeros((3, 4), dtype=int)
    for e, a in enumerate((0, 2, 1)):
        matrix[e, a] = 20
    gate = judge("P0.2", {"generate": {"t2a": with_slots(generated(free_wrong=40), matrix)}})
    assert gate.verdict == G.FAIL and any("codebooks permuted: CB1<-CB2, CB2<-CB1" in r for r in gate.reasons)


def test_p02_names_codebook_major_writing_where_frame_major_is_declared():
    matrix = np.full((4, 5), 25)  # frame-major slots see every codebook alike
    matrix[:, 4] = 0
    gate = judge("P0.2", {"generate": {"t2a": with_slots(generated(free_wrong=30), matrix, other=400)}})
    assert gate.verdict == G.FAIL
    assert any("100 % of tokens follow codebook-major order where token_space.json declares frame-major" in r
               for r in gate.reasons)


def test_p02_scattered_slips_are_a_warning_not_a_layout_diagnosis():
    matrix = rotated(stray=6)  # 60 % of each slot's tokens in place: slips, no system
    gate = judge("P0.2", {"generate": {"t2a": with_slots(generated(free_wrong=16), matrix)}})
    assert gate.verdict == G.WARN and "layout" not in gate.failures


def test_p02_a_rotation_among_many_out_of_range_tokens_is_not_diagnosed_as_layout():
    matrix = rotated()
    matrix[:, 4] = 5  # a third of the tokens out of every range: the model drifts, whatever its order
    gate = judge("P0.2", {"generate": {"t2a": with_slots(generated(free_oor=20, free_wrong=20), matrix)}})
    assert "layout" not in gate.failures


def overridden(frame, share, first=0.99):
    frame = frame.copy()
    constrained = frame["mode"] == "constrained"
    n = int(constrained.sum())
    hit = np.arange(n) < share * n
    frame.loc[constrained, "removed_mass_first"] = np.where(hit, first, 0.01)
    frame.loc[constrained, "removed_mass_peak"] = np.where(hit, first, 0.02)
    frame.loc[constrained, "overridden_share"] = np.where(hit, 0.2, 0.0)
    return frame


def test_p02_fails_when_the_constraint_overrides_most_of_the_models_probability_in_many_samples():
    gate = judge("P0.2", {"generate": {"t2a": overridden(generated(), share=1.0)}})
    assert gate.verdict == G.FAIL and "overridden" in gate.failures
    assert gate.reasons == ["t2a: the constraint removed more than 50 % of the model's probability at some step in 100 % of "
                            "samples (> 25 %; median removed mass at the first step 0.99, the model's top choice overridden "
                            "at 20 % of measured steps): where it matters, the constraint writes in the model's place"]


def test_p02_passes_when_few_samples_have_an_overridden_step():
    assert judge("P0.2", {"generate": {"t2a": overridden(generated(), share=0.1)}}).verdict == G.PASS


# P0.3 ------------------------------------------------------------------------------------------------

def decoded(ok, reasons=None):
    return pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(ok))], "ok": ok, "reason": reasons or [None] * len(ok)})


def test_p03_needs_every_sample_to_decode():
    assert judge("P0.3", {"decode": {"t2a": decoded([True] * 300)}}).verdict == G.PASS


def test_p03_failure_reason_counts_failures_and_picks_the_fix_by_cause():
    gate = judge("P0.3", {"decode": {"t2a": decoded([True] * 299 + [False], [None] * 299 + ["too short: 3 of 8"])}})
    assert gate.verdict == G.FAIL and gate.values["t2a"]["failures_by_reason"] == {"too short": 1}
    assert gate.reasons[0].startswith("t2a: decode_success_rate 0.997 < 1.0 (299 of 300 decoded, 95 % CI [0.981, ")
    assert gate.fixes == [G.spec_of("P0.3").fixes["decode_length"]]


# P0.4 ------------------------------------------------------------------------------------------------

def test_p04_passes_with_the_checklist_thresholds():
    assert judge("P0.4", {"ablate": {"t2a": ablation(), "t2i": ablation()}}).verdict == G.PASS


@pytest.mark.parametrize("change,reason", [
    (dict(win_shuffled=0.69), "t2a: win_rate_shuffled 0.69 < 0.7 (95 % CI [0.64, 0.74])"),
    (dict(win_empty=0.79), "t2a: win_rate_empty 0.79 < 0.8 (95 % CI [0.74, 0.84])"),
    (dict(delta_shuffled=-0.01), "t2a: mean loss correct 1 is not below shuffled 0.99 (delta_shuffled -0.01, 95 % CI [-0.06, 0.04])"),
])
def test_p04_fails_below_any_threshold_naming_the_criterion(change, reason):
    gate = judge("P0.4", {"ablate": {"t2a": ablation(**change), "t2i": ablation()}})
    assert gate.verdict == G.FAIL and gate.reasons == [reason]


def test_p04_needs_delta_empty_of_010_for_at_least_one_write_task():
    assert judge("P0.4", {"ablate": {"t2a": ablation(delta_empty=0.05), "t2i": ablation(delta_empty=0.11)}}).verdict == G.PASS
    gate = judge("P0.4", {"ablate": {"t2a": ablation(delta_empty=0.05), "t2i": ablation(delta_empty=0.09)}})
    assert gate.verdict == G.FAIL
    assert gate.reasons == ["delta_empty < 0.1 for every write task: t2a 0.05 (95 % CI [0, 0.1]), t2i 0.09 (95 % CI [0.04, 0.14])"]


def test_p04_notes_a_delta_whose_interval_straddles_its_threshold():
    gate = judge("P0.4", {"ablate": {"t2a": ablation(delta_empty=0.108, ci=0.01), "t2i": ablation()}})
    assert gate.verdict == G.PASS
    assert gate.notes == ["t2a: delta_empty 0.108 passes 0.1 but its 95 % CI [0.098, 0.118] straddles it"]


# Sample size ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gate_id,tables", [
    ("P0.2", {"generate": {"t2a": generated(n=10)}}),
    ("P0.3", {"decode": {"t2a": decoded([True] * 10)}}),
    ("P0.4", {"ablate": {"t2a": ablation(n=10)}}),
    ("P1.1", {"generate": {"t2a": generated(n=10)}}),
    ("P1.2", {"ablate": {"a2t": read_ablation(n=10)}}),
    ("P1.3", {"collapse": {"t2a": collapse_row(n=10)}}),
])
def test_every_sampled_gate_warns_below_min_n(gate_id, tables):
    gate = judge(gate_id, tables)
    assert gate.verdict == G.WARN and gate.underpowered
    assert any("n=10 < min_n=256" in r for r in gate.reasons)


@pytest.mark.parametrize("gate_id,tables,underpowered", [
    ("P1.1", {"generate": {"t2a": generated(n=64)}}, False),
    ("P1.3", {"collapse": {"t2a": collapse_row(n=64)}}, False),
    ("P0.4", {"ablate": {"t2a": ablation(n=64)}}, True),
    ("P1.2", {"ablate": {"a2t": read_ablation(n=64)}}, True),
])
def test_min_n_generation_sets_the_bar_of_generation_gates_only(gate_id, tables, underpowered):
    gate = judge(gate_id, tables, G.Thresholds(min_n_generation=64))
    assert gate.underpowered is underpowered


def test_an_underpowered_pass_is_never_ready_to_promote():
    gates = G.evaluate({"check": {G.ALL: check_table()}, "generate": {"t2a": generated()}, "decode": {"t2a": decoded([True] * 300)},
                        "ablate": {"t2a": ablation(), "a2t": read_ablation(n=10)}, "collapse": {"t2a": collapse_row()}}, T)
    assert {g.gate: g.verdict for g in gates}["P1.2"] == G.WARN
    assert G.overall(gates) == G.VALID and "too few samples for P1.2" in G.overall_note(gates)


# P1.x ------------------------------------------------------------------------------------------------

def test_p11_warns_below_the_end_rate_with_a_wilson_interval():
    assert judge("P1.1", {"generate": {"t2a": generated(end_rate=0.75)}}).verdict == G.PASS
    gate = judge("P1.1", {"generate": {"t2a": generated(end_rate=0.25)}})
    assert gate.verdict == G.WARN and gate.values["t2a"]["end_rate"] == 0.25
    assert gate.reasons[0] == ("t2a: end_rate 0.25 < 0.5 (75 of 300 free generations ended by themselves, 95 % CI [0.204, 0.302])")


def test_p11_warns_ends_too_early_with_the_median_end_position():
    frame = generated(end_rate=1.0, tokens=40)
    frame["end_position"] = 2  # every free run ends after 2 of its 40 expected tokens
    gate = judge("P1.1", {"generate": {"t2a": frame}})
    assert gate.verdict == G.WARN and gate.failures == ["early_end"]
    assert gate.reasons[0].startswith("t2a: ends too early: 300 of 300 free generations (100 % > 50 %) end before 50 % "
                                      "of their expected length, median end position 5 % of expected")
    assert "no_end" not in gate.failures


def test_p11_runs_that_end_near_their_expected_length_do_not_end_too_early():
    frame = generated(end_rate=1.0, tokens=40)
    frame["end_position"] = 36
    gate = judge("P1.1", {"generate": {"t2a": frame}})
    assert gate.verdict == G.PASS and gate.values["t2a"]["early_end_share"] == 0


def test_p12_fails_when_zero_or_noise_input_is_as_good_as_the_real_one():
    assert judge("P1.2", {"ablate": {"a2t": read_ablation(), "i2t": read_ablation()}}).verdict == G.PASS
    gate = judge("P1.2", {"ablate": {"a2t": read_ablation(delta=0.01), "i2t": read_ablation()}})
    assert gate.verdict == G.FAIL
    assert "a2t: delta_zero 0.01 < 0.1 (95 % CI [-0.04, 0.06]): zero modality tokens score almost as well as the real ones" in gate.reasons


@pytest.mark.parametrize("change,kind,reason", [
    (dict(unique_ratio=0.01, unique_outputs=3), "identical", "t2a: unique_ratio 0.01 < 0.9: 3 distinct outputs of 300"),
    (dict(silent_share=0.02), "silence", "t2a: silent_share 0.02 > 0.0: 2 % of outputs are silent"),
    (dict(noise_share=0.5), "noise", "t2a: noise_share 0.5 > 0.1: 50 % of outputs are noise-like"),
    (dict(loop_share=0.3), "loops", "t2a: loop_share 0.3 > 0.1: 30 % of outputs are caught in a repetition loop"),
])
def test_p13_names_the_collapse_it_finds_and_gives_its_own_fix(change, kind, reason):
    assert judge("P1.3", {"collapse": {"t2a": collapse_row()}}).verdict == G.PASS
    gate = judge("P1.3", {"collapse": {"t2a": collapse_row(**change)}})
    assert gate.verdict == G.FAIL and gate.reasons[0].startswith(reason)
    assert gate.fixes == [G.spec_of("P1.3").fixes[kind]]


def test_p13_judges_repetition_loops_on_audio_only():
    assert judge("P1.3", {"collapse": {"t2i": collapse_row(loop_share=0.3)}}).verdict == G.PASS


def test_p13_blames_the_decoder_when_distinct_codes_decode_alike():
    gate = judge("P1.3", {"collapse": {"t2a": collapse_row(unique_ratio=0.004, unique_outputs=1, unique_code_ratio=1.0)}})
    assert gate.verdict == G.FAIL and "their codes are distinct (unique_code_ratio 1)" in gate.reasons[0]
    assert gate.fixes == [G.spec_of("P1.3").fixes["decoder_alike"]]


# Registry, overall, JSON ---------------------------------------------------------------------------------

def test_a_task_missing_from_the_golden_set_is_skipped_not_failed():
    gate = judge("P0.2", {"generate": {"t2a": generated()}, "golden_n": {"t2a": 300, "t2i": 0}})
    assert gate.verdict == G.PASS and gate.values["t2i"] == "SKIP: task absent from the golden set"
    assert judge("P0.2", {}).verdict == G.SKIP


def test_a_toy_gate_added_to_the_registry_is_judged_per_task_with_skip_and_sample_size():
    def judge_lengths(data, t):
        verdict = G.Verdict({"n": len(data["generate"]), "mean_len": float(data["generate"]["n_generated"].mean())})
        if verdict.values["mean_len"] < 50:
            verdict.fail("short", f"mean_len {verdict.values['mean_len']} < 50")
        return verdict

    toy = G.GateSpec("X.1", "Are generations long?", "P1", ("generate",), judge_lengths, fixes={"short": "Generate more."})
    [gate] = G.evaluate({"generate": {"t2a": generated()}}, T, registry=[toy])
    assert (gate.verdict, gate.reasons, gate.fix, gate.values["t2i"]) == (
        G.FAIL, ["t2a: mean_len 40.0 < 50"], "Generate more.", "SKIP: no generate table")


def test_overall_verdict():
    def make(**verdicts):
        return [G.Gate(s.id, s.tier, s.question, verdicts.get(s.id.replace(".", ""), G.PASS)) for s in G.REGISTRY]

    assert G.overall(make()) == G.READY
    assert G.overall(make(P13=G.FAIL)) == G.VALID
    assert G.overall(make(TD=G.FAIL)) == G.VALID
    assert G.overall(make(P04=G.FAIL)) == G.NOT_VALID
    assert G.overall(make(P03=G.SKIP)) == G.UNVERIFIED
    assert G.overall(make(P02=G.WARN)) == G.READY


def test_three_line_assessment_follows_the_checklist():
    def make(**verdicts):
        return [G.Gate(s.id, s.tier, s.question, verdicts.get(s.id.replace(".", ""), G.PASS)) for s in G.REGISTRY]

    assert G.assessment(make()) == {"training_dynamics": "PASS", "multi_task_compatibility": "PASS",
                                    "generation_validity": "PASS"}
    assert G.assessment(make(P04=G.SKIP))["generation_validity"] == "PENDING: P0.4 not run"


def test_the_assessment_names_the_deciding_gates_and_leaves_their_reasons_to_the_gate_table():
    p04 = judge("P0.4", {"ablate": {"t2a": ablation(0.5, 0.5, -0.01, -0.01)}})
    assert p04.verdict == G.FAIL and len(" ".join(p04.reasons)) > 100
    line = G.assessment([p04])["generation_validity"]
    assert line == "FAIL: P0.4 failed (t2a)"


def test_gates_json_values_are_strict_json():
    gate = judge("P1.1", {"generate": {"t2a": generated(modes=("free",), end_rate=0.0)}})
    text = strict_json([gate.as_dict()])
    assert "NaN" not in text and json.loads(text)[0]["values"]["t2a"]["end_position_over_expected_median"] is None


def test_wilson_interval_is_never_degenerate():
    low, high = G.wilson_interval(256, 256)
    assert 0.98 < low < 1.0 and high == pytest.approx(1.0)
    assert G.wilson_interval(0, 0) == [None, None]


def test_gates_table_is_one_row_per_gate_with_json_values():
    table = G.gates_table([judge("P0.1", {"check": {G.ALL: check_table()}})])
    assert table["gate"].tolist() == ["P0.1"] and json.loads(table["values"][0]) == {"all": {"artifacts": 2, "mismatches": 0}}


# The registry against the stage catalogue ----------------------------------------------------------

def test_a_gate_reading_a_table_no_stage_makes_is_refused():
    clap = G.GateSpec("P1.9", "Does the audio match its text?", "P1", ("clap",), lambda data, t: G.Verdict())
    with pytest.raises(G.UnknownTable, match="gate P1.9 reads the table\\(s\\) 'clap', which no stage makes"):
        G.evaluate({"generate": {"t2a": generated()}}, T, registry=[clap])


def test_mmgates_own_registry_is_checked_when_it_is_imported():
    import subprocess
    import sys

    code = "import mmgate.stages as s; del s.TABLES['decode']; import mmgate.gates"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "UnknownTable: gate P0.3 reads the table(s) 'decode'" in proc.stderr


def test_a_table_missing_for_a_task_the_golden_set_holds_is_an_error_not_a_skip():
    tables = {"generate": {"t2a": generated()}, "golden_n": {"t2a": 300, "t2i": 0}}
    with pytest.raises(G.MissingTable, match="gate P0.3 needs the decode table for t2a, which the golden set holds"):
        G.evaluate(tables, T)


def test_a_task_absent_from_the_golden_set_and_an_absent_training_log_still_skip():
    tables = {"generate": {"t2a": generated()}, "golden_n": {"t2a": 0, "t2i": 0}}
    gates = {g.gate: g for g in G.evaluate(tables, T, registry=[G.spec_of("P0.3"), G.spec_of("TD")])}
    assert gates["P0.3"].verdict == G.SKIP and gates["P0.3"].values["t2a"] == "SKIP: task absent from the golden set"
    assert gates["TD"].verdict == G.SKIP
