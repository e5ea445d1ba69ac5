"""What the report, the trend, the diff and the end of a run show a reader."""

import json
import re
import time
import wave

import numpy as np
import pandas as pd
import pytest
from test_gates import T, ablation, collapse_row, generated, read_ablation

from mmgate import gates as G
from mmgate.cli import end_of_run, main as cli
from mmgate.compare import diff_reports
from mmgate.io import write_text
from mmgate.media import select_media
from mmgate.render import fmt, gate_table, measured, render_diff, render_report, render_trend
from mmgate.trend import build_trend, trend_rows

EXTERNAL = re.compile(r"""(src|href)=["']?(https?:)?//""")


def report_dict(overall="ready to promote", **gates):
    """A gates.json with the given gate -> (verdict, values) entries."""
    return {"checkpoint": "c", "step": None, "overall": overall, "provenance": {},
            "gates": [{"gate": g, "verdict": v, "values": values, "reasons": [], "thresholds": thresholds, "evidence": []}
                      for g, (v, values, thresholds) in gates.items()]}


# ----------------------------------------------------------------------------------- numbers and tables

def test_numbers_show_three_significant_figures_and_intervals_in_brackets():
    assert fmt(-0.0014160666661477089) == "-0.00142" and fmt(46.27315812149936) == "46.3" and fmt(256) == "256"
    assert measured(0.953125, [0.9197, 0.97312]) == "0.953 [0.92, 0.973]" and fmt(float("nan")) == "n/a"


def test_the_gate_table_marks_each_value_against_its_pass_mark():
    gate = {"gate": "P1.1", "verdict": "WARN", "thresholds": {"min_end_rate": 0.5, "min_n_generation": 256},
            "values": {"t2a": {"n": 300, "end_rate": 0.25, "end_rate_ci": [0.2, 0.3]}, "t2i": {"n": 300, "end_rate": 0.75}}}
    table = gate_table(gate)
    row = next(r for r in table["rows"] if r["metric"] == "end_rate")
    assert table["tasks"] == ["t2a", "t2i"] and row["pass_mark"].startswith("≥ 0.5 (min_end_rate)")
    assert [(c["text"], c["mark"]) for c in row["cells"]] == [("0.25 [0.2, 0.3]", False), ("0.75", True)]


def test_a_one_of_criterion_is_not_marked_missed_where_another_task_meets_it():
    gate = {"gate": "P0.4", "verdict": "PASS", "thresholds": {"min_delta_empty": 0.1},
            "values": {"t2a": {"delta_empty": 0.05}, "t2i": {"delta_empty": 0.2}}}
    row = next(r for r in G.criterion_marks(gate) if r["criterion"].threshold == "min_delta_empty")
    assert row["marks"] == {"t2a": (0.05, None), "t2i": (0.2, True)}
    gate["values"]["t2i"]["delta_empty"] = 0.08
    row = next(r for r in G.criterion_marks(gate) if r["criterion"].threshold == "min_delta_empty")
    assert row["marks"] == {"t2a": (0.05, False), "t2i": (0.08, False)}


def test_a_criterion_for_audio_does_not_mark_images():
    gate = {"gate": "P1.3", "verdict": "PASS", "thresholds": {"max_loop_share": 0.1},
            "values": {"t2a": {"loop_share": 0.2}, "t2i": {"loop_share": 0.5}}}
    row = next(r for r in G.criterion_marks(gate) if r["criterion"].metric == "loop_share")
    assert row["marks"] == {"t2a": (0.2, False), "t2i": (0.5, None)}


def missed_while_passing(gate: G.Gate) -> list[str]:
    """Criteria a PASS gate misses: each task's own, or a one_of criterion no task meets."""
    out = []
    for row in G.criterion_marks(gate.as_dict()):
        marks = [met for _, met in row["marks"].values()]
        if gate.verdict == G.PASS and False in marks:
            out.append(f"{gate.gate} {row['label']}: {row['marks']}")
    return out


VARIANTS = {  # one table per criterion a judge applies, made to miss it
    "P0.2": [{"generate": {"t2a": generated(cons_oor=1)}}, {"generate": {"t2a": generated(free_wrong=2)}},
             {"generate": {"t2a": generated(removed=0.5)}}, {"generate": {"t2a": generated(n=40)}}],
    "P0.4": [{"ablate": {"t2a": ablation(win_shuffled=0.5)}}, {"ablate": {"t2a": ablation(win_empty=0.5)}},
             {"ablate": {"t2a": ablation(delta_shuffled=-0.1)}}, {"ablate": {"t2a": ablation(delta_empty=-0.1)}},
             {"ablate": {"t2a": ablation(delta_empty=0.05), "t2i": ablation(delta_empty=0.08)}},
             {"ablate": {"t2a": ablation(n=40)}}],
    "P1.1": [{"generate": {"t2a": generated(end_rate=0.2)}}],
    "P1.2": [{"ablate": {"a2t": read_ablation(delta=0.01)}}, {"ablate": {"a2t": read_ablation(win=0.5)}}],
    "P1.3": [{"collapse": {"t2a": collapse_row(unique_ratio=0.5)}}, {"collapse": {"t2a": collapse_row(silent_share=0.3)}},
             {"collapse": {"t2a": collapse_row(noise_share=0.3)}}, {"collapse": {"t2a": collapse_row(loop_share=0.3)}},
             {"collapse": {"t2i": collapse_row(loop_share=0.3)}}],
}


@pytest.mark.parametrize("gate_id,tables", [(g, t) for g, variants in VARIANTS.items() for t in variants])
def test_every_criterion_the_report_marks_missed_keeps_its_gate_from_passing(gate_id, tables):
    gate = G.judge_gate(G.spec_of(gate_id), tables, T)
    assert not missed_while_passing(gate)
    assert gate.verdict != G.PASS or gate_id == "P1.3" and "t2i" in tables["collapse"]  # image loops are not judged


def test_every_criterion_names_a_threshold_its_gate_reports():
    for spec in G.REGISTRY:
        for criterion in spec.criteria:
            assert not isinstance(criterion.threshold, str) or criterion.threshold in spec.thresholds, (spec.id, criterion)


# ------------------------------------------------------------------------------------------------ media

def decode_table(ids, failed=()):
    return pd.DataFrame({"sample_id": ids, "ok": [i not in failed for i in ids],
                         "reason": ["too short: 3 < 8 tokens" if i in failed else None for i in ids],
                         "file_path": [None if i in failed else f"{i}.wav" for i in ids]})


def fingerprint_table(ids, **flags):
    frame = pd.DataFrame({"sample_id": ids, "silent": False, "noise": False, "longest_loop_frames": 1,
                          "duplicate_of": None, "near_duplicate": False})
    for column, values in flags.items():
        for sample_id, value in values.items():
            frame.loc[frame["sample_id"] == sample_id, column] = value
    return frame


def test_media_show_problems_worst_first_then_a_seeded_random_sample():
    ids = [f"s{i:02d}" for i in range(20)]
    prints = fingerprint_table(ids, silent={"s05": True}, duplicate_of={"s07": "s03"}, longest_loop_frames={"s09": 12})
    items = select_media("t2a", decode_table(ids, failed={"s11"}), prints, n_random=3, seed=1)
    assert [i["sample_id"] for i in items[:4]] == ["s11", "s07", "s05", "s09"]
    assert items[0]["flags"] == ["decode failed: too short: 3 < 8 tokens"] and items[0]["file_path"] is None
    assert items[1]["flags"] == ["identical to s03"] and items[1]["pair"]["sample_id"] == "s03"
    assert items[3]["flags"] == ["loops for 12 frames"] and len(items) == 7
    again = select_media("t2a", decode_table(ids, failed={"s11"}), prints, n_random=3, seed=1)
    other = select_media("t2a", decode_table(ids, failed={"s11"}), prints, n_random=3, seed=2)
    assert [i["sample_id"] for i in again] == [i["sample_id"] for i in items]
    assert [i["sample_id"] for i in other[4:]] != [i["sample_id"] for i in items[4:]]


def test_image_loops_are_no_media_problem_as_p13_does_not_judge_them():
    ids = ["a", "b"]
    items = select_media("t2i", decode_table(ids), fingerprint_table(ids, longest_loop_frames={"a": 50}), kind="image",
                         n_random=0)
    assert items == []


def test_media_carry_their_prompt_and_lengths():
    generate = pd.DataFrame({"sample_id": ["a", "a"], "mode": ["constrained", "free"], "n_generated": [5, 9],
                             "expected_len": [8, 8], "emitted_end": [True, False], "end_position": [5, None]})
    prompts = pd.DataFrame({"sample_id": ["a"], "task": ["t2a"], "prompt": ["slow piano"], "caption": [""]})
    (item,) = select_media("t2a", decode_table(["a"]), generate=generate, prompts=prompts)
    assert item["prompt"] == "slow piano" and item["flags"] == ["stopped at 5 of 8 tokens"]


# ------------------------------------------------------------------------------------------ report page

def write_wav(path, seconds=0.05, rate=8000):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate)
        out.writeframes((np.sin(np.arange(int(seconds * rate)) / 5) * 3000).astype("<i2").tobytes())


@pytest.fixture
def small_report(tmp_path):
    """A built report (gates plus tables) of 12 T2A samples, one of which failed to decode."""
    from mmgate.report import build

    ids = [f"a{i:03d}" for i in range(12)]
    for i in ids[1:]:
        write_wav(tmp_path / f"{i}.wav")
    decode = decode_table(ids, failed={"a000"}).assign(file_path=lambda f: [str(tmp_path / p) if isinstance(p, str) else None
                                                                            for p in f["file_path"]])
    tables = {"decode": {"t2a": decode}}
    report = build({}, T, checkpoint="good", provenance={
        "checkpoint": "good", "checkpoint_dir": "/runs/x/checkpoint-500", "config_hash": "381b714a0c414a73",
        "token_space_sha256": "619f19df" * 8, "golden_set": "golden.parquet", "decoders": {"image": "vqvae"},
        "decoder_weights": {"image": "random weights"}, "golden_n": {"t2a": 12}})
    gen = generated(n=12, free_wrong=1).assign(sample_id=lambda f: [ids[int(s[1:])] for s in f["sample_id"]], task="t2a")
    report["tables"].update(decode=tables["decode"], generate={"t2a": gen},
                            prompts=pd.DataFrame({"sample_id": ids, "task": "t2a", "prompt": [f"prompt {i}" for i in ids]}))
    report["gates"] = [g.as_dict() for g in G.evaluate({"generate": {"t2a": gen}, "decode": {"t2a": decode}}, T)]
    return report


def test_the_report_page_is_self_contained_with_prompts_provenance_and_reasons(small_report):
    page = render_report(small_report)
    assert not EXTERNAL.search(page)
    assert "data:audio/wav;base64," in page and "prompt a005" in page  # the media, with their prompts
    assert "619f19df" * 8 in page and "/runs/x/checkpoint-500" in page and "381b714a0c414a73" in page
    assert "decode failed: too short: 3 &lt; 8 tokens" in page
    p03 = next(g for g in small_report["gates"] if g["gate"] == "P0.3")
    assert p03["verdict"] == G.FAIL and all(r.replace("<", "&lt;") in page for r in p03["reasons"])


def test_the_gate_table_comes_before_every_gate_section(small_report):
    page = render_report(small_report)
    assert page.index('id="gates"') < page.index('id="provenance"') < page.index('id="P0.1"') < page.index('id="media"')


def test_random_decoder_weights_put_a_banner_on_the_page(small_report):
    assert "The image decoder has random weights" in render_report(small_report)
    small_report["provenance"]["decoder_weights"] = {"image": "from /models/vq"}
    assert "random weights" not in render_report(small_report)


# ---------------------------------------------------------------------------------------------- trend

def gates_json(name, step, run, p01="PASS", end_rate=0.6):
    return {"checkpoint": name, "step": step, "overall": "not valid" if p01 == "FAIL" else "ready to promote",
            "provenance": {"checkpoint_dir": f"{run}/{name}"},
            "gates": [{"gate": "P0.1", "verdict": p01, "values": {"all": {"mismatches": 0 if p01 == "PASS" else 3}},
                       "thresholds": {}},
                      {"gate": "P1.1", "verdict": "SKIP" if p01 == "FAIL" else "PASS", "thresholds": {"min_end_rate": 0.5},
                       "values": {"t2a": "SKIP: blocked by P0.1"} if p01 == "FAIL" else {"t2a": {"end_rate": end_rate}}}]}


def test_trend_rows_carry_the_run_and_the_pass_mark():
    rows = trend_rows(gates_json("checkpoint-500", 500, "/runs/a"))
    end = next(r for r in rows if r["metric"] == "end_rate")
    assert end["run"] == "/runs/a" and end["limit"] == 0.5 and end["step"] == 500


def test_the_trend_page_orders_by_step_and_shows_overall_and_p01(tmp_path):
    files = []
    for name, step, p01 in (("checkpoint-1000", 1000, "PASS"), ("checkpoint-500", 500, "FAIL"), ("checkpoint-1500", 1500, "PASS")):
        path = tmp_path / name / "gates.json"
        write_text(path, json.dumps(gates_json(name, step, "/runs/a", p01)))
        files.append(path)
    trend = build_trend(files)
    assert trend.drop_duplicates("checkpoint")["checkpoint"].tolist() == ["checkpoint-500", "checkpoint-1000", "checkpoint-1500"]
    page = render_trend(trend)
    header = re.search(r"<tr><th>checkpoint</th>.*?</tr>", page, re.S).group(0)
    assert re.findall(r"<th>(.*?)</th>", header) == ["checkpoint", "step", "overall", "P0.1", "P1.1"]
    assert re.search(r"checkpoint-500</td><td[^>]*>500</td>\s*<td[^>]*>not valid: P0.1 failed</td><td class=\"FAIL\">FAIL", page)
    assert not EXTERNAL.search(page)


# ----------------------------------------------------------------------------------------------- diff

def test_diff_reports_verdict_changes_and_deltas_with_both_intervals():
    a = gates_json("a", 1, "/r", end_rate=0.7)
    b = gates_json("b", 2, "/r", end_rate=0.3)
    b["gates"][1]["verdict"] = "WARN"
    a["gates"][1]["values"]["t2a"]["end_rate_ci"] = [0.6, 0.8]
    b["gates"][1]["values"]["t2a"]["end_rate_ci"] = [0.2, 0.4]
    diff = diff_reports(a, b)
    assert [(v["gate"], v["a"], v["b"]) for v in diff["verdicts"] if v["changed"]] == [("P1.1", "PASS", "WARN")]
    end = next(m for m in diff["metrics"] if m["metric"] == "end_rate")
    assert end["delta"] == pytest.approx(-0.4) and (end["a_met"], end["b_met"]) == (True, False)
    assert end["intervals_overlap"] is False and not EXTERNAL.search(render_diff(diff))


def test_mmgate_diff_prints_what_changed(tmp_path, capsys):
    for name, rate in (("a", 0.7), ("b", 0.3)):
        write_text(tmp_path / f"results/report/ckpt={name}/gates.json", json.dumps(gates_json(name, 1, "/r", end_rate=rate)))
    assert cli(["diff", "a", "b", "--results", str(tmp_path / "results"), "--html", str(tmp_path / "d.html")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"P1.1\s+t2a\s+end_rate\s+0.7 ok\s+0.3 MISS\s+-0.4", out)
    assert (tmp_path / "d.html").exists()


def test_mmgate_diff_names_a_missing_checkpoint(tmp_path, capsys):
    write_text(tmp_path / "report/ckpt=a/gates.json", json.dumps(gates_json("a", 1, "/r")))
    assert cli(["diff", "a", "nope", "--results", str(tmp_path)]) == 2
    assert "nope: neither a path nor a checkpoint with a report" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- end of a run

def test_the_end_of_a_run_lists_this_runs_verdicts_and_what_has_no_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_text(tmp_path / "results/report/ckpt=old/gates.json", json.dumps(gates_json("old", 1, "/r")))
    started = time.time() + 1
    text = end_of_run(["old", "new"], "results", started, failed=True)
    assert text.startswith("mmgate: the run failed; verdicts on disk:")
    assert re.search(r"old\s+PASS\s+PASS\s+ready to promote\s+\(report from an earlier run\)", text)
    assert "no report yet: new" in text and "mmgate inspect results" in text


# ------------------------------------------------------------------------------- on the suite's zoo run

@pytest.mark.slow
def test_no_zoo_gate_passes_while_its_report_marks_a_criterion_missed(zoo_run):
    for path in sorted((zoo_run / "results/report").glob("ckpt=*/gates.json")):
        for gate in json.loads(path.read_text())["gates"]:
            marks = [met for row in G.criterion_marks(gate) for _, met in row["marks"].values()]
            assert gate["verdict"] != G.PASS or False not in marks, (path, gate["gate"])


@pytest.mark.slow
def test_the_collapsed_checkpoints_page_shows_its_identical_outputs_first(zoo_run):
    page = (zoo_run / "results/report/ckpt=collapsed/report.html").read_text()
    media = page[page.index('id="media"'):]
    first = media[media.index("<figure"):media.index("</figure>")]
    assert 'class="flag">identical to t2a-' in first and "data:audio/wav;base64," in first
    assert "outputs have a problem" in media and not EXTERNAL.search(page)


@pytest.mark.slow
def test_mmgate_diff_good_deaf_shows_the_prompt_gates_turning_and_both_outputs(zoo_run, tmp_path, capsys):
    html = tmp_path / "diff.html"
    assert cli(["diff", "good", "deaf", "--results", str(zoo_run / "results"), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"P0.4\s+PASS\s+FAIL\s+changed", out) and re.search(r"P1.2\s+PASS\s+FAIL\s+changed", out)
    page = html.read_text()
    pairs = page[page.index("t2a: the same prompts"):]
    assert pairs.count("data:audio/wav;base64,") >= 2 * 4 and not EXTERNAL.search(page)


@pytest.mark.slow
def test_a_snakemake_run_ends_with_every_checkpoints_verdict(zoo_run):
    from conftest import CONFIG, ZOO_CONFIG, snakemake

    saved = zoo_run / "snakemake.stderr"  # the fixture's run; a reused run dir may predate it
    stderr = saved.read_text() if saved.exists() else snakemake(
        "--cores", "1", "-d", str(zoo_run), "--configfile", str(CONFIG), str(ZOO_CONFIG),
        str(zoo_run / "test-overrides.yaml"), "--forcerun", "trend", "trend").stderr
    tail = stderr[stderr.index("mmgate: verdicts:"):]
    for name in ("good", "deaf", "collapsed", "shifted_codes"):
        assert re.search(rf"^{name}\s+(PASS|FAIL)", tail, re.M), tail
    assert "results/report/ckpt=<checkpoint>/report.html" in tail


# ---------------------------------------------------- the zoo's pages, re-rendered (issue 27, findings 4 and 5)

def zoo_page(zoo_run, ckpt, monkeypatch):
    """The report page of one zoo checkpoint, rebuilt from its stage files (read only, never written)."""
    from mmgate.golden import read_golden
    from mmgate.report import build
    from mmgate.tables import report_inputs

    monkeypatch.chdir(zoo_run)  # the reports' inputs are relative to the working directory
    shards = {task: sorted(p.stem.split("-", 1)[1] for p in (zoo_run / f"results/ablate/ckpt={ckpt}/task={task}").glob("part-*.parquet"))
              for task in ("t2a", "t2i", "a2t", "i2t")}
    saved = json.loads((zoo_run / f"results/report/ckpt={ckpt}/gates.json").read_text())
    min_n = next(g["thresholds"]["min_n"] for g in saved["gates"] if "min_n" in (g.get("thresholds") or {}))
    report = build(report_inputs(ckpt, {t: s for t, s in shards.items() if s}), G.Thresholds(min_n=min_n),
                   read_golden(zoo_run / "golden-test.parquet"), provenance=saved["provenance"], checkpoint=ckpt)
    return report, render_report(report)


def section(page, start, end=None):
    tail = page[page.index(start):]
    return tail[:tail.index(end)] if end else tail


@pytest.mark.slow
def test_a_p04_failure_shows_under_outputs_the_per_example_loss_with_its_own_and_other_prompts(zoo_run, monkeypatch):
    _, page = zoo_page(zoo_run, "deaf", monkeypatch)
    media = section(page, 'id="media"')
    for task in ("t2a", "t2i"):
        block = section(media, f'id="prompt-{task}"', "</div>\n")
        assert re.search(r"lower loss than the shuffled prompt in \d+ of 32 examples \(win_rate_shuffled 0\.\d+ \[", block)
        assert re.search(r"lower loss than the empty prompt in \d+ of 32 examples", block)
        assert "<th>own prompt</th><th>shuffled prompt</th><th>empty prompt</th><th>gain</th>" in block
        assert block.count(f'<td class="id">{task}-') == 8 and "data:image/png;base64," in block  # examples and plot
        assert "no two different prompts gave identical outputs" in block
    assert "These checks cannot show whether an output follows its prompt" in media


@pytest.mark.slow
def test_a_p04_failure_with_copied_outputs_shows_different_prompts_with_the_same_output(zoo_run, monkeypatch):
    _, page = zoo_page(zoo_run, "collapsed", monkeypatch)
    block = section(page, 'id="prompt-t2a"', "</div>\n")
    assert re.search(r"\d+ output\(s\) identical to the output of a different prompt", block)
    pairs = section(block, "<th>a different prompt</th>", "</table>")
    prompts = re.findall(r'<span class="prompt">“(.*?)”</span>', pairs)
    assert len(prompts) >= 2 and all(a != b for a, b in zip(prompts[::2], prompts[1::2]))
    assert pairs.count("data:audio/wav;base64,") == len(prompts)


@pytest.mark.slow
def test_p04_lists_delta_empty_once_with_both_pass_marks(zoo_run, monkeypatch):
    _, page = zoo_page(zoo_run, "deaf", monkeypatch)
    p04 = section(page, '<h2 id="P0.4"', '<h2 id="P1.1"')
    assert p04.count("<td>delta_empty</td>") == 1
    row = section(p04, "<td>delta_empty</td>", "</tr>")
    assert row.count("✗") == 2 and "&gt; 0; ≥ 0.1 (min_delta_empty), by at least one task" in row


def test_delta_empty_is_marked_missed_where_its_own_task_misses_greater_than_zero():
    gate = {"gate": "P0.4", "verdict": "FAIL", "thresholds": {"min_delta_empty": 0.1},
            "values": {"t2a": {"delta_empty": -0.02}, "t2i": {"delta_empty": 0.0998, "delta_empty_ci": [0.0895, 0.111]}}}
    rows = [r for r in gate_table(gate)["rows"] if r["metric"] == "delta_empty"]
    assert len(rows) == 1 and [c["mark"] for c in rows[0]["cells"]] == [False, False]
    gate["values"]["t2a"]["delta_empty"] = 0.2  # t2a meets the one-of mark: t2i's 0.0998 passes (> 0) unmarked no more
    assert [c["mark"] for c in next(r for r in gate_table(gate)["rows"] if r["metric"] == "delta_empty")["cells"]] == [True, True]


@pytest.mark.slow
def test_the_provenance_block_names_the_sample_sizes_once(zoo_run, monkeypatch):
    _, page = zoo_page(zoo_run, "deaf", monkeypatch)
    prov = section(page, 'id="provenance"', "</dl>")
    assert "<dt>samples per task</dt><dd>generated t2a 32, t2i 32; scored a2t 32, i2t 32, t2a 32, t2i 32</dd>" in prov
    assert "samples per task" not in prov.lower().replace("<dt>samples per task</dt>", "", 1)


@pytest.mark.slow
def test_the_assessment_names_the_deciding_gates_in_a_line_each(zoo_run, monkeypatch):
    _, page = zoo_page(zoo_run, "deaf", monkeypatch)
    items = re.findall(r"<li><b>(Training dynamics|Multi task compatibility|Generation validity)</b>: (.*?)</li>", page)
    assert [name for name, _ in items] == ["Training dynamics", "Multi task compatibility", "Generation validity"]
    assert all(len(text) < 160 for _, text in items), items
    lines = dict(items)
    assert "P0.4 failed (t2a, t2i)" in lines["Generation validity"] and "P1.2 failed (a2t, i2t)" in lines["Multi task compatibility"]


@pytest.mark.slow
def test_the_diff_page_fits_a_narrow_window(zoo_run, tmp_path, capsys):
    html = tmp_path / "diff.html"
    assert cli(["diff", "good", "deaf", "--results", str(zoo_run / "results"), "--html", str(html)]) == 0
    page = html.read_text()
    assert re.search(r"table\.t\{[^}]*display:block;max-width:100%;overflow-x:auto", page)  # a wide table scrolls itself
    metrics = section(page, "<h2>Metrics", "</table>")
    assert metrics.count('<td class="num wrap"><span class="nw">') == 2 * metrics.count("<tr><td>P")  # value, then its interval
    assert "<td>free_<wbr>violation_<wbr>pct</td>" in metrics  # long names break at their underscores


# ------------------------------------------------------------------------------------- the zoo's trend

def trend_figures(trend, monkeypatch):
    """What trend_plots draws: per plot title, {task: line}, the interval bands/bars and the legend."""
    from mmgate import render as R

    drawn = {}

    def keep(fig):
        ax = fig.axes[0]
        drawn[ax.get_title()] = {"lines": {l.get_label(): l for l in ax.lines if l.get_label() in R.TASK_COLORS},
                                 "intervals": len(ax.collections) + len([c for c in ax.containers]),
                                 "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []}
        R._pyplot().close(fig)
        return ""

    monkeypatch.setattr(R, "figure_png", keep)
    R.trend_plots(trend)
    return drawn


@pytest.mark.slow
def test_the_trend_plots_each_metric_only_for_the_tasks_its_gate_judges(zoo_run, monkeypatch):
    trend = build_trend(sorted((zoo_run / "results/report").glob("ckpt=*/gates.json")))
    loops = trend[trend["metric"] == "loop_share"]
    assert loops.set_index("task")["judged"].groupby(level=0).all().to_dict() == {"t2a": True, "t2i": False}
    assert loops.loc[loops["task"] == "t2i", "limit"].isna().all()  # P1.3 has no loop pass mark for images
    drawn = trend_figures(trend, monkeypatch)
    assert set(drawn["P1.3 loop share"]["lines"]) == {"t2a"} and set(drawn["P0.4 win rate shuffled"]["lines"]) == {"t2a", "t2i"}


@pytest.mark.slow
def test_the_trend_tells_tasks_apart_by_colour_blind_safe_colours_and_markers(zoo_run, monkeypatch):
    from matplotlib.colors import to_hex

    trend = build_trend(sorted((zoo_run / "results/report").glob("ckpt=*/gates.json")))
    lines = trend_figures(trend, monkeypatch)["P0.4 win rate shuffled"]["lines"]
    okabe_ito = {"#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#000000"}
    assert {to_hex(line.get_color()) for line in lines.values()} <= okabe_ito
    assert lines["t2a"].get_marker() != lines["t2i"].get_marker()


@pytest.mark.slow
def test_the_trend_carries_each_metrics_interval_and_draws_it(zoo_run, monkeypatch):
    files = sorted((zoo_run / "results/report").glob("ckpt=*/gates.json"))
    trend = build_trend(files)
    win = trend[(trend["metric"] == "win_rate_shuffled") & (trend["checkpoint"] == "deaf") & (trend["task"] == "t2a")].iloc[0]
    saved = next(g for g in json.loads((zoo_run / "results/report/ckpt=deaf/gates.json").read_text())["gates"] if g["gate"] == "P0.4")
    assert [win["ci_low"], win["ci_high"]] == pytest.approx(saved["values"]["t2a"]["win_rate_shuffled_ci"])
    drawn = trend_figures(trend, monkeypatch)["P0.4 win rate shuffled"]
    assert drawn["intervals"] > 0 and "95 % interval" in drawn["legend"]
    assert re.search(r"<td class=\"num\">0\.438 \[0\.282, 0\.607\]</td>", render_trend(trend))


def test_the_trend_draws_intervals_as_bands_along_a_run(tmp_path, monkeypatch):
    files = []
    for step, rate in ((500, 0.4), (1000, 0.6), (1500, 0.7)):
        report = gates_json(f"checkpoint-{step}", step, "/runs/a", end_rate=rate)
        report["gates"][1]["values"]["t2a"]["end_rate_ci"] = [rate - 0.1, rate + 0.1]
        write_text(tmp_path / f"{step}.json", json.dumps(report))
        files.append(tmp_path / f"{step}.json")
    trend = build_trend(files)
    assert trend.loc[trend["metric"] == "end_rate", "ci_low"].tolist() == pytest.approx([0.3, 0.5, 0.6])
    from mmgate import render as R

    bands = []
    monkeypatch.setattr(R, "figure_png", lambda fig: bands.append(
        (fig.axes[0].get_title(), [type(c).__name__ for c in fig.axes[0].collections])) or R._pyplot().close(fig) or "")
    R.trend_plots(trend)
    assert any(title == "P1.1 end rate" and any(kind.endswith("PolyCollection") for kind in kinds)  # fill_between
               for title, kinds in bands)


def test_the_report_header_names_the_gate_that_decided_the_overall_verdict():
    report = report_dict("not valid", **{"P0.2": ("WARN", {}, {}), "P0.4": ("FAIL", {}, {}), "P1.2": ("FAIL", {}, {})})
    report["gates"][0]["failures"] = ["free_violation"]
    report["gates"][1]["task_verdicts"] = {"t2a": "FAIL", "t2i": "FAIL"}
    from mmgate.report import build

    page = render_report({**build({}, T, checkpoint="c", provenance={}), "overall": report["overall"],
                          "gates": report["gates"]})
    header = re.search(r"<p>Overall:(.*?)<br>", page, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", header).strip() == (
        "not valid: P0.4 failed (t2a, t2i), P1.2 failed; free runs need constrained decoding")
