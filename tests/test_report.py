"""Report pieces that do not need a pipeline run: trend, length audit, training log, mmgate check/inspect."""

import json

import numpy as np
import pandas as pd
import pytest

from mmgate.cli import main as cli
from mmgate.report import length_audit, verdict_config
from mmgate.training import training_dynamics
from mmgate.trend import build_trend


def gates_json(path, ckpt, step, p04="PASS", end_rate=0.5):
    gates = [{"gate": g, "verdict": "PASS", "values": {}, "fix": None, "evidence": []} for g in ("P0.1", "P0.2", "P0.3")]
    gates.append({"gate": "P0.4", "verdict": p04, "fix": "more T2A" if p04 == "FAIL" else None, "evidence": ["x.parquet"],
                  "values": {"t2a": {"n": 300, "win_rate_shuffled": 0.9, "delta_empty": 0.2}}})
    gates.append({"gate": "P1.1", "verdict": "PASS", "fix": None, "evidence": [], "values": {"t2a": {"end_rate": end_rate, "n": 300}}})
    path.mkdir(parents=True, exist_ok=True)
    (path / "gates.json").write_text(json.dumps({"checkpoint": ckpt, "step": step, "overall": "x", "gates": gates}))
    return path / "gates.json"


def test_trend_gains_rows_for_a_new_checkpoint_and_keeps_the_old_ones(tmp_path):
    first = gates_json(tmp_path / "report/ckpt=checkpoint-1000", "checkpoint-1000", 1000, end_rate=0.2)
    before = build_trend([first])
    second = gates_json(tmp_path / "report/ckpt=checkpoint-2000", "checkpoint-2000", 2000, end_rate=0.6)
    after = build_trend([second, first])
    assert set(after["checkpoint"]) == {"checkpoint-1000", "checkpoint-2000"} and len(after) == 2 * len(before)
    assert after[(after["gate"] == "overall")]["verdict"].tolist() == ["x", "x"]
    pd.testing.assert_frame_equal(after[after["checkpoint"] == "checkpoint-1000"].reset_index(drop=True), before)
    end = after[after["metric"] == "end_rate"]
    assert end["step"].tolist() == [1000, 2000] and end["value"].tolist() == [0.2, 0.6]


def test_check_exits_zero_only_when_every_p0_gate_passes(tmp_path, capsys):
    good = gates_json(tmp_path / "a/report/ckpt=good", "good", None).parent
    bad = gates_json(tmp_path / "b/report/ckpt=bad", "bad", None, p04="FAIL").parent
    warn = gates_json(tmp_path / "c/report/ckpt=warn", "warn", None, p04="WARN").parent
    assert cli(["check", str(good)]) == 0
    assert cli(["check", str(bad)]) == 1
    assert cli(["check", str(warn)]) == 0 and cli(["check", "--strict", str(warn)]) == 1
    assert cli(["check", str(tmp_path / "a")]) == 0  # a results tree: every checkpoint under it
    assert "bad: FAIL" in capsys.readouterr().out


def test_check_on_a_tree_fails_when_any_checkpoint_fails(tmp_path):
    gates_json(tmp_path / "report/ckpt=good", "good", None)
    gates_json(tmp_path / "report/ckpt=bad", "bad", None, p04="FAIL")
    assert cli(["check", str(tmp_path)]) == 1


def test_check_without_reports_exits_2_and_says_where_it_looked(tmp_path, capsys):
    assert cli(["check", str(tmp_path)]) == 2
    assert "no gates.json found" in capsys.readouterr().err


def test_check_exits_2_on_a_corrupt_report_naming_it(tmp_path, capsys):
    path = gates_json(tmp_path / "report/ckpt=good", "good", None)
    path.write_text('{"checkpoint": "good", "gates": [')
    assert cli(["check", str(tmp_path)]) == 2
    assert f"{path}: not a readable mmgate gates.json" in capsys.readouterr().err


def test_check_fails_a_report_missing_a_p0_gate(tmp_path, capsys):
    path = gates_json(tmp_path / "report/ckpt=good", "good", None)
    report = json.loads(path.read_text())
    path.write_text(json.dumps({**report, "gates": [g for g in report["gates"] if g["gate"] != "P0.3"]}))
    assert cli(["check", str(tmp_path)]) == 1
    assert "incomplete report: no P0.3" in capsys.readouterr().out
    path.write_text(json.dumps({**report, "gates": []}))
    assert cli(["check", str(tmp_path)]) == 1


def test_check_does_not_search_below_the_results_folder(tmp_path):
    gates_json(tmp_path / "other_run/results/report/ckpt=bad", "bad", None, p04="FAIL")
    assert cli(["check", str(tmp_path)]) == 2


def test_inspect_orders_checkpoints_by_step(tmp_path, capsys):
    gates_json(tmp_path / "report/ckpt=checkpoint-1000", "checkpoint-1000", 1000)
    gates_json(tmp_path / "report/ckpt=checkpoint-500", "checkpoint-500", 500)
    assert cli(["inspect", "--json", str(tmp_path)]) == 0
    assert [s["checkpoint"] for s in json.loads(capsys.readouterr().out)] == ["checkpoint-500", "checkpoint-1000"]


def test_inspect_json_lists_gates_fixes_and_evidence(tmp_path, capsys):
    gates_json(tmp_path / "report/ckpt=bad", "bad", None, p04="FAIL")
    assert cli(["inspect", "--json", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["gates"]["P0.4"] == "FAIL" and out[0]["fixes"] == {"P0.4": "more T2A"}
    assert out[0]["evidence"] == {"P0.4": ["x.parquet"]}


def test_the_verdict_config_ignores_which_checkpoints_run_and_how_work_is_cut_into_jobs():
    config = {"checkpoints": {"a": "runs/a"}, "checkpoint_glob": None, "sharding": {"shards_per_job": 4},
              "demo": {"build": True}, "gates": {"min_n": 30}, "generation": {"temperature": 1.0}}
    grown = {**config, "checkpoints": {"a": "runs/a", "b": "runs/b"}, "sharding": {"shards_per_job": 8}}
    stricter = {**config, "gates": {"min_n": 60}}
    assert verdict_config(grown) == verdict_config(config)
    assert verdict_config(stricter) != verdict_config(config)
    assert set(verdict_config(config)) == {"gates", "generation"}


def test_length_audit_counts_what_a_fixed_limit_truncates():
    golden = pd.DataFrame({"task": ["t2a"] * 4 + ["t2i"] * 2, "expected_len": [800, 1200, 2000, 3000, 256, 1024]})
    audit = length_audit(golden, {"t2a": 1200, "t2i": 256}).set_index("task")
    assert audit.loc["t2a", "truncated_share"] == 0.5 and audit.loc["t2i", "truncated_share"] == 0.5
    assert audit.loc["t2a", "max"] == 3000


def test_training_dynamics_reports_change_nans_and_spikes(tmp_path):
    path = tmp_path / "log.csv"
    t2a = [9.8, 9.0, 8.5, 8.0, 12.0, 7.0, 6.5, float("nan"), 5.6]
    pd.DataFrame({"step": range(0, 450, 50), "t2a_avg": t2a, "head_norm_mean": np.linspace(0.45, 1.16, 9)}).to_csv(path, index=False)
    _, summary = training_dynamics(path)
    row = summary.set_index("metric").loc["t2a_avg"]
    assert row["first"] == 9.8 and row["last"] == 5.6 and row["change"] == pytest.approx(-4.2)
    assert row["nan_count"] == 1 and row["spikes"] == 1
    assert summary.set_index("metric").loc["head_norm_mean", "change"] == pytest.approx(0.71)
