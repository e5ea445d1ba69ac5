"""Report verdicts from declared inputs: stale shards, P0.1 failures, training dynamics, strict gates.json."""

import json

import numpy as np
import pandas as pd
import pytest

from mmgate import gates as G
from mmgate.cli import main as cli
from mmgate.io import strict_json, write_parquet, write_text
from mmgate.render import render_report
from mmgate.report import build
from mmgate.tables import StaleResultError, report_inputs
from mmgate.training import read_training_log, training_criteria


def golden(n_t2a=10):
    return pd.DataFrame({"sample_id": [f"a{i:03d}" for i in range(n_t2a)], "task": "t2a"})


def generate_part(ids, tokens=8):
    return pd.DataFrame({"sample_id": ids, "n_generated": tokens, "out_of_range": 0, "wrong_slot": 0,
                         "out_of_range_pct": 0.0, "first_violation": pd.array([None] * len(ids), dtype="Int64"),
                         "emitted_end": True, "end_position": tokens, "expected_len": tokens,
                         "removed_mass_mean": 0.01, "removed_mass_max": 0.02})


def write_generation(root, ckpt, parts):
    """`parts`: shard -> sample ids; both modes get the same rows."""
    for mode in ("free", "constrained"):
        for shard, ids in parts.items():
            write_parquet(generate_part(ids), root / f"results/generate/ckpt={ckpt}/task=t2a/mode={mode}/part-{shard}.parquet", {})


def test_report_inputs_declare_every_stage_file_of_each_task():
    inputs = report_inputs("good", {"t2a": ["000", "001"], "a2t": ["000"]})
    assert inputs["generate_t2a_free"] == ["results/generate/ckpt=good/task=t2a/mode=free/part-000.parquet",
                                           "results/generate/ckpt=good/task=t2a/mode=free/part-001.parquet"]
    assert inputs["decode_t2a"][1] == "results/decode/ckpt=good/task=t2a/part-001.parquet"
    assert inputs["fingerprint_t2a"] == ["results/fingerprint/ckpt=good/task=t2a/fingerprints.parquet"]
    assert inputs["ablate_a2t"] == ["results/ablate/ckpt=good/task=a2t/part-000.parquet"]
    assert inputs["ablation_summary_a2t"] == ["results/ablation_summary/ckpt=good/task=a2t/summary.parquet"]
    assert not any("t2i" in key for key in inputs)  # a task absent from the golden set plans nothing


def test_a_checkpoint_that_failed_p01_declares_only_its_check():
    assert report_inputs("bad", {"t2a": ["000"]}, p01_passed=False) == {"check": ["results/token_space/ckpt=bad/check.parquet"]}


def test_a_stale_shard_left_from_a_larger_golden_set_never_enters_a_verdict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_generation(tmp_path, "good", {"000": [f"a{i:03d}" for i in range(10)], "001": [f"a{i:03d}" for i in range(10, 138)]})
    inputs = {k: v for k, v in report_inputs("good", {"t2a": ["000"]}).items() if k.startswith("generate")}
    report = build(inputs, G.Thresholds(), golden(10), checkpoint="good", partial=True)  # the report reads part-000 only
    p02 = next(g for g in report["gates"] if g["gate"] == "P0.2")
    assert p02["values"]["t2a"]["n"] == 10 and p02["verdict"] == G.WARN  # 10 < min_n: WARN, not PASS
    page = render_report(report)
    assert "n=10 &lt; min_n=256" in page and "P0.2" in page
    inputs = {k: v for k, v in report_inputs("good", {"t2a": ["000", "001"]}).items() if k.startswith("generate")}
    with pytest.raises(StaleResultError, match="part-001.parquet") as err:
        build(inputs, G.Thresholds(), golden(10), checkpoint="good", partial=True)
    assert "128 sample(s) not in the current golden set" in str(err.value)


def test_a_shard_missing_golden_samples_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_generation(tmp_path, "good", {"000": [f"a{i:03d}" for i in range(8)]})
    inputs = {k: v for k, v in report_inputs("good", {"t2a": ["000"]}).items() if k.startswith("generate")}
    with pytest.raises(StaleResultError, match="2 golden sample"):
        build(inputs, G.Thresholds(), golden(10), checkpoint="good", partial=True)


def p01_failed_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check = pd.DataFrame({"kind": ["tokenizer"], "name": ["IMAGE"], "source": ["tok"], "expected": ["<img_0> at 4136"],
                          "found": ["<img_0> at 4137"], "match": [False]})
    write_parquet(check, tmp_path / "results/token_space/ckpt=shifted/check.parquet", {})
    report = build(report_inputs("shifted", {"t2a": ["000"]}, p01_passed=False), G.Thresholds(), golden(300),
                   checkpoint="shifted")
    summary = {k: report[k] for k in ("checkpoint", "step", "overall", "overall_note", "assessment", "gates")}
    write_text(tmp_path / "results/report/ckpt=shifted/gates.json", strict_json(summary))
    return report


def test_a_p01_failure_still_gets_a_gates_json_that_inspect_lists_and_check_fails(tmp_path, monkeypatch, capsys):
    report = p01_failed_report(tmp_path, monkeypatch)
    verdicts = {g["gate"]: g["verdict"] for g in report["gates"]}
    assert verdicts["P0.1"] == G.FAIL and {v for g, v in verdicts.items() if g != "P0.1"} == {G.SKIP}
    assert report["overall"] == "not valid"
    p01 = report["gates"][0]
    assert p01["reasons"] == ["tokenizer IMAGE, tok: expected <img_0> at 4136, found <img_0> at 4137"]
    assert p01["evidence"] == ["results/token_space/ckpt=shifted/check.parquet"]
    assert cli(["inspect", "results"]) == 0
    out = capsys.readouterr().out
    assert "shifted" in out and "FAIL" in out and "tokenizer IMAGE, tok: expected <img_0> at 4136" in out
    assert cli(["check", "results"]) == 1


def test_gates_json_is_strict_json_without_nan(tmp_path, monkeypatch):
    p01_failed_report(tmp_path, monkeypatch)
    text = (tmp_path / "results/report/ckpt=shifted/gates.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in gates.json"))


# Training dynamics ----------------------------------------------------------------------------------

def training_log(**columns):
    steps = np.arange(50, 50 * (len(next(iter(columns.values()))) + 1), 50)
    return pd.DataFrame({"step": steps, **columns})


HEALTHY = dict(t2a_avg=[9.8, 8.0, 7.0, 6.2, 5.6], a2t_avg=[2.1, 1.9, 1.8, 1.7, 1.6], head_norm_mean=[0.46, 0.7, 0.9, 1.0, 1.16])


def test_td_passes_the_checklist_example():
    verdict = training_criteria(training_log(**HEALTHY), G.Thresholds())
    assert verdict.verdict == G.PASS and verdict.reasons == []


@pytest.mark.parametrize("change,reason", [
    (dict(t2a_avg=[9.8, 9.9, 9.9, 9.9, 9.9]), "write loss t2a_avg did not fall: 9.8 -> 9.9"),
    (dict(a2t_avg=[1.5, 1.6, 1.6, 1.65, 1.7]), "read loss a2t_avg rose 1.5 -> 1.7 (+13.3 %, tolerance 5 %)"),
    (dict(t2a_avg=[9.8, 8.0, float("nan"), 6.2, 5.6]), "t2a_avg has 1 NaN/inf value(s)"),
    (dict(t2a_avg=[9.8, 8.0, 7.0, 12.0, 5.6]), "t2a_avg spiked above 1.25 x its recent median at step(s) [200]"),
    (dict(head_norm_mean=[0.46, 0.46, 0.46, 0.46, 0.4601]), "head_norm_mean barely moved: 0.46 -> 0.46 (< 1 %)"),
])
def test_td_names_each_training_problem(change, reason):
    verdict = training_criteria(training_log(**{**HEALTHY, **change}), G.Thresholds())
    assert verdict.verdict in (G.FAIL, G.WARN) and verdict.reasons == [reason]


def test_td_reads_a_trainer_state_log_history(tmp_path):
    history = [{"step": 50, "loss": 3.0, "t2a_avg": 9.8}, {"step": 50, "eval_loss": 3.1},
               {"step": 100, "loss": 2.0, "t2a_avg": 7.0}]
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 100, "log_history": history}))
    log = read_training_log(path)
    assert log["step"].tolist() == [50, 100] and log.loc[0, "eval_loss"] == 3.1
    assert training_criteria(log, G.Thresholds()).values["t2a_avg_last"] == 7.0


def test_assessment_has_the_checklists_three_lines_and_a_p01_failure_makes_generation_invalid(tmp_path, monkeypatch):
    report = p01_failed_report(tmp_path, monkeypatch)
    assert set(report["assessment"]) == {"training_dynamics", "multi_task_compatibility", "generation_validity"}
    assert report["assessment"]["generation_validity"].startswith("FAIL: P0.1 failed")


# Per-purpose sample sizes --------------------------------------------------------------------------

def golden_with_lengths(n=10):
    return golden(n).assign(expected_len=[8 * (i + 1) for i in range(n)])


def test_report_inputs_plan_generation_over_its_own_shards_and_ablation_over_every_row():
    inputs = report_inputs("good", {"t2a": ["000", "001"]}, generation_shards={"t2a": ["000"]})
    assert [k for k in inputs if k.startswith(("generate", "decode"))] == ["generate_t2a_free", "generate_t2a_constrained",
                                                                           "decode_t2a", "decode_media_t2a"]
    assert all(len(inputs[k]) == 1 for k in ("generate_t2a_free", "decode_t2a", "decode_media_t2a"))
    assert len(inputs["ablate_t2a"]) == 2


def test_generation_tables_must_hold_exactly_the_generation_subset(tmp_path, monkeypatch):
    from mmgate.golden import generation_subset

    monkeypatch.chdir(tmp_path)
    subset = generation_subset(golden_with_lengths(10), 4)["sample_id"].tolist()
    write_generation(tmp_path, "good", {"000": subset})
    inputs = {k: v for k, v in report_inputs("good", {"t2a": ["000"]}).items() if k.startswith("generate")}
    report = build(inputs, G.Thresholds(), golden_with_lengths(10), checkpoint="good", samples_per_task=4, partial=True)
    assert report["sample_sizes"] == {"generation": {"t2a": 4, "t2i": 0}, "ablation": {"t2a": 10, "t2i": 0, "a2t": 0, "i2t": 0}}
    with pytest.raises(StaleResultError, match="6 golden sample"):  # the same shard, read as if every row were generated
        build(inputs, G.Thresholds(), golden_with_lengths(10), checkpoint="good", partial=True)


def test_generation_gates_warn_below_min_n_generation_and_ablation_gates_below_min_n(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_generation(tmp_path, "good", {"000": [f"a{i:03d}" for i in range(10)]})
    inputs = {k: v for k, v in report_inputs("good", {"t2a": ["000"]}).items() if k.startswith("generate")}
    report = build(inputs, G.Thresholds(min_n_generation=8), golden(10), checkpoint="good", partial=True)
    p02 = next(g for g in report["gates"] if g["gate"] == "P0.2")
    assert p02["verdict"] == G.PASS and p02["thresholds"]["min_n_generation"] == 8
    report = build(inputs, G.Thresholds(min_n_generation=64), golden(10), checkpoint="good", partial=True)
    p02 = next(g for g in report["gates"] if g["gate"] == "P0.2")
    assert p02["verdict"] == G.WARN and "n=10 < min_n_generation=64: too few generation samples" in p02["reasons"][0]


def test_the_html_report_states_the_generation_and_the_ablation_n(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_generation(tmp_path, "good", {"000": [f"a{i:03d}" for i in range(10)]})
    inputs = {k: v for k, v in report_inputs("good", {"t2a": ["000"]}).items() if k.startswith("generate")}
    provenance = {"golden_n": {"t2a": 256, "a2t": 256}, "generation_n": {"t2a": 10}}
    page = render_report(build(inputs, G.Thresholds(), golden(10), provenance=provenance, checkpoint="good", partial=True))
    assert "<dt>samples per task</dt><dd>generated t2a 10; scored a2t 256, t2a 256</dd>" in page
