"""The Snakemake workflow as users run it: lint, formatting, the planned DAG, and the demo end to end."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO, TEST_PER_TASK, snakemake, stage2_shard

from mmgate.io import read_parquet, read_provenance, write_parquet
from mmgate.stages import STAGES


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("configs", [["config/config.yaml"], ["config/config.yaml", "config/examples/fault-zoo.yaml"],
                                     ["config/config.yaml", "--config", "sharding={shards_per_job: 1}"]],
                         ids=["demo", "fault-zoo", "one-shard-jobs"])
def test_lint_is_clean(configs):
    proc = snakemake("--lint", "--configfile", *configs)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_snakefmt_check_passes():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_of_new_checkpoints_plans_the_token_space_check_before_any_gpu_job(tmp_path):
    proc = snakemake("-n", "-d", str(tmp_path), "--configfile", str(REPO / "config" / "config.yaml"))
    counts = job_counts(proc.stdout)
    # GPU jobs are planned only once a checkpoint's P0.1 table exists and passes (a Snakemake checkpoint):
    # a checkpoint that fails P0.1 gets its report from that table alone, and no GPU job at all
    assert counts == {"demo": 1, "token_space_stage2": 1, "token_space": 2, "report": 2, "trend": 1, "verdicts": 1, "all": 1,
                      "total": 9}


@pytest.mark.slow
def test_demo_ends_with_a_passing_token_space_check_for_both_checkpoints(demo_workdir):
    for ckpt in ("good", "deaf"):
        path = demo_workdir / f"results/token_space/ckpt={ckpt}/check.parquet"
        rows = read_parquet(path)
        assert rows["match"].all()
        assert {"token_space", "stage2_shard", "stage3_init", "checkpoint", "tokenizer", "model"} <= set(rows["kind"])
        assert (rows["kind"] == "stage2_shard").sum() == 7  # three shards, their sidecar, and their token_tables vs the tokenizer
        meta = read_provenance(path)
        assert meta["schema_version"] == 1 and meta["checkpoint"] == ckpt and "torch" in meta["packages"]


@pytest.mark.slow
def test_second_run_schedules_nothing(demo_workdir):
    proc = snakemake("check_token_space", "-n", "-d", str(demo_workdir), "--configfile", str(REPO / "config" / "config.yaml"))
    # only the verdict of the cached checks (a rule without output always runs), no check itself
    assert job_counts(proc.stdout) == {"check_token_space": 1, "total": 1}


@pytest.mark.slow
def test_a_retokenized_shard_fails_the_gate_naming_the_shard(demo_workdir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_workdir / "resources" / "demo", data)
    shard = data / "stage2" / "part-001.parquet"
    write_parquet(read_parquet(shard), shard, {"token_space.sha256": "f" * 64})
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    text = yaml.safe_dump(config).replace("resources/demo", str(data))
    config = yaml.safe_load(text)
    config["demo"]["build"] = False
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    proc = snakemake("check_token_space", "--cores", "2", "-d", str(tmp_path), "--keep-going", "--configfile", str(config_path),
                     check=False)
    assert proc.returncode != 0  # `snakemake check_token_space` fails when any checkpoint fails P0.1
    log = (tmp_path / "logs" / "token_space" / "good.log").read_text()
    assert "P0.1 token-space check FAILED for checkpoint 'good'" in log
    assert "part-001.parquet" in log and "re-tokenize this shard" in log
    verdicts = (tmp_path / "logs" / "token_space" / "verdicts.log").read_text()
    assert "'good'" in verdicts and "'deaf'" in verdicts
    evidence = read_parquet(tmp_path / "results/token_space/ckpt=good/check.parquet")  # kept: the report's evidence
    assert evidence.loc[~evidence["match"], "name"].tolist() == ["part-001.parquet"]


@pytest.mark.slow
def test_demo_good_checkpoint_uses_its_conditioning_and_deaf_does_not(demo_workdir):
    """Teacher-forced loss with the correct vs another example's conditioning input, per task."""
    import numpy as np
    import torch

    from mmgate import demo
    from mmgate.golden import load_golden
    from mmgate.loading import load_model
    from mmgate.templates import PromptTemplate
    from mmgate.tokenspace import TokenSpace

    root = demo_workdir / "resources" / "demo"
    space = TokenSpace.load(root / "token_space.json")
    golden = load_golden(root / "golden.parquet", space)
    results = {}
    for ckpt in ("good", "deaf"):
        model, tokenizer = load_model(root / "checkpoints" / ckpt, base=str(root / "stage3_init"))
        templates = {t: PromptTemplate(s, tokenizer, space.special_tokens) for t, s in demo.DEFAULT_TEMPLATES.items()}
        for task, rows in golden.groupby("task"):
            examples = [demo.Example(r.task, r.prompt, r.caption, r.modality_tokens, {}) for r in rows.itertuples()][:96]
            shuffled = [demo.with_conditioning_from(ex, examples[(i + 1) % len(examples)]) for i, ex in enumerate(examples)]
            losses = []
            for batch in (examples, shuffled):
                ids, attention, labels = demo._collate([demo.encode_training_example(e, templates, tokenizer, space) for e in batch], tokenizer.pad_token_id)
                with torch.no_grad():
                    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
                nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100)
                mask = (labels[:, 1:] != -100).float()
                losses.append(((nll * mask).sum(1) / mask.sum(1)).numpy())
            results[ckpt, task] = (float(np.mean(losses[0] < losses[1])), float(np.mean(losses[1] - losses[0])))
    for task in ("t2a", "t2i", "a2t", "i2t"):
        assert results["good", task][0] >= 0.8 and results["good", task][1] > 0.1, results
        # deaf may win a little more than half the time, by a negligible margin: it has learned the marginal
        assert results["deaf", task][1] < 0.05, results


N = TEST_PER_TASK  # golden examples per task in the suite's run of the demo and the fault zoo


@pytest.fixture(scope="module")
def generated(zoo_run):
    """The suite's finished run of the demo and the zoo (every stage of every checkpoint)."""
    return zoo_run


@pytest.mark.slow
def test_demo_constrained_generation_is_compliant_at_every_golden_length(generated):
    from mmgate.golden import read_golden

    golden = read_golden(generated / "golden-test.parquet")
    for task in ("t2a", "t2i"):
        frame = pd.concat(read_parquet(p) for p in sorted((generated / f"results/generate/ckpt=good/task={task}/mode=constrained").glob("*.parquet")))
        assert sorted(frame["sample_id"]) == sorted(golden.loc[golden["task"] == task, "sample_id"])
        assert frame["out_of_range"].sum() == 0 and frame["wrong_slot"].sum() == 0
        assert (frame["n_generated"] >= frame["expected_len"]).all()
        assert frame["expected_len"].nunique() >= 3


@pytest.mark.slow
def test_generation_parquet_opens_with_duckdb_hive_partitioning(generated):
    import duckdb

    rows = duckdb.sql(
        f"SELECT task, mode, count(*) AS n, sum(out_of_range) AS oor FROM read_parquet('{generated}/results/generate/*/*/*/*.parquet', "
        "hive_partitioning = true) WHERE ckpt = 'good' GROUP BY task, mode ORDER BY task, mode"
    ).fetchall()
    assert [(t, m, n) for t, m, n, _ in rows] == [("t2a", "constrained", N), ("t2a", "free", N), ("t2i", "constrained", N), ("t2i", "free", N)]
    assert all(oor == 0 for t, m, n, oor in rows if m == "constrained")


@pytest.fixture(scope="module")
def ablated(zoo_run):
    targets = [f"results/ablation_summary/ckpt={c}/task={t}/summary.parquet" for c in ("good", "deaf") for t in ("t2a", "t2i", "a2t", "i2t")]
    frames = [read_parquet(zoo_run / t).assign(ckpt=t.split("ckpt=")[1].split("/")[0], task=t.split("task=")[1].split("/")[0])
              for t in targets]
    return pd.concat(frames).set_index(["ckpt", "task", "condition"])


@pytest.mark.slow
def test_demo_good_passes_the_prompt_ablation_thresholds_as_measured_by_the_rule(ablated):
    good = ablated.loc["good"]
    for task in ("t2a", "t2i"):
        assert good.loc[(task, "shuffled"), "n"] == N and pd.isna(good.loc[(task, "shuffled"), "warning"])
        assert good.loc[(task, "shuffled"), "win_rate"] >= 0.70 and good.loc[(task, "empty"), "win_rate"] >= 0.80
        assert good.loc[(task, "shuffled"), "delta"] > 0 and good.loc[(task, "empty"), "delta"] > 0
    assert max(good.loc[("t2a", "empty"), "delta"], good.loc[("t2i", "empty"), "delta"]) >= 0.10
    for task in ("a2t", "i2t"):
        for condition in ("zero", "noise", "shuffled"):
            assert good.loc[(task, condition), "delta_ci_low"] > 0.10 and good.loc[(task, condition), "win_rate"] >= 0.80


@pytest.mark.slow
def test_demo_deaf_fails_the_prompt_ablation_as_measured_by_the_rule(ablated):
    deaf = ablated.loc["deaf"]
    for task in ("t2a", "t2i"):
        assert deaf.loc[(task, "shuffled"), "win_rate"] < 0.70 or deaf.loc[(task, "empty"), "win_rate"] < 0.80
    assert max(deaf.loc[("t2a", "empty"), "delta"], deaf.loc[("t2i", "empty"), "delta"]) < 0.10
    for task in ("a2t", "i2t"):
        assert max(deaf.loc[(task, c), "delta"] for c in ("zero", "noise", "shuffled")) < 0.10


@pytest.mark.slow
def test_ablation_parquet_opens_with_pandas_and_duckdb_hive_partitioning(ablated, zoo_run):
    demo_workdir = zoo_run
    import duckdb

    n = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{demo_workdir}/results/ablate/*/*/part-*.parquet', hive_partitioning = true) "
        "WHERE ckpt = 'good' AND task = 't2a' AND condition = 'shuffled'"
    ).fetchall()[0][0]
    assert n == N
    part = pd.read_parquet(demo_workdir / "results/ablate/ckpt=good/task=t2a/part-000.parquet")
    assert {"sample_id", "condition", "loss", "n_target_tokens", "input_hash"} <= set(part.columns)


@pytest.fixture(scope="module")
def fingerprinted(zoo_run):
    return zoo_run


@pytest.mark.slow
def test_demo_good_decodes_every_constrained_generation_with_the_expected_format(fingerprinted):
    from mmgate.golden import read_golden

    golden = read_golden(fingerprinted / "golden-test.parquet").set_index("sample_id")
    for task in ("t2a", "t2i"):
        parts = sorted((fingerprinted / f"results/decode/ckpt=good/task={task}").glob("part-*.parquet"))
        frame = pd.concat(read_parquet(p) for p in parts).set_index("sample_id")
        assert len(frame) == N and frame["ok"].all(), frame.loc[~frame["ok"], "reason"].head()
        meta = golden.loc[frame.index]
        if task == "t2a":
            assert (frame["sample_rate"] == meta["sample_rate"]).all() and (frame["channels"] == meta["channels"]).all()
            assert (frame["samples"] == meta["n_frames"] * 320).all()
        else:
            assert (frame["width"] == meta["proc_size"]).all() and (frame["height"] == meta["proc_size"]).all()
        assert all((fingerprinted / "results" / f).is_file() for f in frame["file"])  # relative to results/, in media/
        assert {Path(f).parts[:3] for f in frame["file"]} <= {("media", "ckpt=good", f"task={task}")}


@pytest.mark.slow
def test_demo_good_outputs_are_distinct_across_prompts(fingerprinted):
    for task in ("t2a", "t2i"):
        summary = read_parquet(fingerprinted / f"results/collapse/ckpt=good/task={task}/collapse.parquet").iloc[0]
        assert summary["n"] == N and not summary["collapsed"] and summary["unique_ratio"] == 1.0


@pytest.mark.slow
def test_decode_and_fingerprint_parquet_open_with_duckdb_hive_partitioning(fingerprinted):
    import duckdb

    decoded = duckdb.sql(
        f"SELECT task, count(*), sum(CAST(ok AS INTEGER)) FROM read_parquet('{fingerprinted}/results/decode/*/*/part-*.parquet', "
        "hive_partitioning = true) WHERE ckpt = 'good' GROUP BY task ORDER BY task"
    ).fetchall()
    assert decoded == [("t2a", N, N), ("t2i", N, N)]
    prints = duckdb.sql(
        f"SELECT task, count(*) FROM read_parquet('{fingerprinted}/results/fingerprint/*/*/fingerprints.parquet', "
        "hive_partitioning = true) WHERE ckpt = 'good' GROUP BY task ORDER BY task"
    ).fetchall()
    assert prints == [("t2a", N), ("t2i", N)]
    assert len(pd.read_parquet(fingerprinted / "results/fingerprint/ckpt=good/task=t2a/fingerprints.parquet")) == N


@pytest.fixture(scope="module")
def reported(zoo_run):
    return zoo_run


@pytest.mark.slow
def test_demo_report_verdicts_for_good_and_deaf(reported):
    import json

    good = json.loads((reported / "results/report/ckpt=good/gates.json").read_text())
    deaf = json.loads((reported / "results/report/ckpt=deaf/gates.json").read_text())
    verdicts = {g["gate"]: g["verdict"] for g in good["gates"]}
    # good leaves its modality in free mode (audio codes in image spans, wrong codebook slots after a
    # slip): free runs need constrained decoding, which does not block promotion
    assert verdicts == {"P0.1": "PASS", "P0.2": "WARN", "P0.3": "PASS", "P0.4": "PASS", "P1.1": "PASS", "P1.2": "PASS",
                        "P1.3": "PASS", "TD": "PASS"}, good["gates"]
    assert good["overall"] == "ready to promote" and good["overall_note"] == "free runs need constrained decoding"
    deaf_gates = {g["gate"]: g for g in deaf["gates"]}
    assert deaf_gates["P0.4"]["verdict"] == "FAIL" and deaf_gates["P1.2"]["verdict"] == "FAIL" and deaf["overall"] == "not valid"
    for report in (good, deaf):
        for gate in report["gates"]:
            if gate["verdict"] in ("FAIL", "WARN"):  # every miss says what was measured against what
                assert gate["reasons"] and all(re.search(r"\d", r) for r in gate["reasons"]), gate
                assert gate["fix"]
    assert good["length_audit"] and good["provenance"]["golden_n"] == {"a2t": N, "i2t": N, "t2a": N, "t2i": N}
    assert set(good["assessment"]) == {"training_dynamics", "multi_task_compatibility", "generation_validity"}


@pytest.mark.slow
def test_demo_html_report_is_self_contained(reported):
    text = (reported / "results/report/ckpt=good/report.html").read_text()
    assert "mmgate gate report: good" in text and "data:audio/wav;base64" in text and "data:image/png;base64" in text
    assert not re.search(r"""(src|href)=["']https?://""", text)


@pytest.mark.slow
def test_mmgate_check_passes_good_and_fails_deaf(reported):
    from mmgate.cli import main as cli

    assert cli(["check", str(reported / "results/report/ckpt=good")]) == 0
    assert cli(["check", str(reported / "results/report/ckpt=deaf")]) == 1


@pytest.mark.slow
def test_trend_holds_every_checkpoint(reported):
    trend = read_parquet(reported / STAGES["trend"].path())
    assert {"good", "deaf"} <= set(trend["checkpoint"]) and {"P0.4", "P1.1"} <= set(trend["gate"])


@pytest.mark.slow
def test_snakemake_report_includes_the_gate_reports(reported):
    out = reported / "snakemake-report.zip"
    snakemake("--report", str(out), "-d", str(reported), "--configfile", str(REPO / "config" / "config.yaml"),
              str(REPO / "config" / "examples" / "fault-zoo.yaml"), str(reported / "test-overrides.yaml"))
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("report.html") for n in names) and any(n.endswith("trend.html") for n in names)
    assert any(n.endswith("gates.parquet") for n in names)
    index = next(n for n in names if n.count("/") == 1 and n.endswith("report.html"))
    assert "mmgate verifies checkpoints" in zipfile.ZipFile(out).read(index).decode()


def test_a_user_configfile_replaces_the_demo_config(user_config, tmp_path):
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(user_config()))
    counts = job_counts(proc.stdout)
    assert counts["token_space"] == 1 and "demo" not in counts, counts
    assert "ckpt=mine" in proc.stdout and "ckpt=good" not in proc.stdout and "ckpt=deaf" not in proc.stdout


def test_a_missing_explicit_checkpoint_stops_the_run_naming_it(user_config, mini_demo, tmp_path):
    config = user_config(checkpoints={"mine": str(mini_demo["ckpt"]), "gone": "runs/checkpoint-9"})
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(config), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "gone: runs/checkpoint-9" in out and "Relative paths resolve against" in out


def test_no_complete_checkpoint_is_an_error_not_an_empty_run(user_config, tmp_path):
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(user_config(checkpoints={}, checkpoint_glob=str(tmp_path / "none-*"))),
                     check=False)
    assert proc.returncode != 0 and "No complete checkpoint to verify" in proc.stdout + proc.stderr


def test_a_decoder_that_does_not_fit_the_token_space_fails_before_any_job(user_config, tmp_path):
    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["decoders"]
    config = user_config(decoders={**bundled, "image": {"backend": "plugin", "function": "plugins.fake_seed:stripes"}})
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(config), check=False)
    assert proc.returncode != 0 and "decoders.image.codebook_size = 0" in proc.stdout + proc.stderr


WITH_TEST_PLUGINS = {"PYTHONPATH": str(REPO / "tests")}  # `plugins.fake_seed`, for Snakemake and its jobs


def test_a_decoder_plugin_with_a_typo_is_an_error_before_any_job(user_config, tmp_path):
    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["decoders"]
    image = {"backend": "plugin", "function": "plugins.fake_seed:no_such_codec", "codebook_size": 512}
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(user_config(decoders={**bundled, "image": image})),
                     check=False, env=WITH_TEST_PLUGINS)
    assert proc.returncode != 0
    assert "decoders.image.function = 'plugins.fake_seed:no_such_codec': module 'plugins.fake_seed' has no " \
           "'no_such_codec'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_decoder_that_raises_fails_its_job_and_no_verdict_rests_on_it(user_config, mini_demo, tmp_path):
    from conftest import stage2_shard

    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["decoders"]
    image = {"backend": "plugin", "function": "plugins.fake_seed:broken", "codebook_size": 512}
    config = user_config(decoders={**bundled, "image": image},
                         stage2={"shards": [stage2_shard(mini_demo, tmp_path / "stage2.parquet")]})
    run = tmp_path / "run"
    proc = snakemake("--cores", "2", "--keep-going", "-d", str(run), "--configfile", str(config), check=False,
                     env=WITH_TEST_PLUGINS)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (run / "logs").rglob("*.log"))
    assert "This is the decoder's failure, not the model's" in logs
    assert not (run / "results/report/ckpt=mine/gates.json").exists()  # no P0.3 FAIL "decoder error x N"
    assert list((run / "results/generate/ckpt=mine").rglob("part-000.parquet"))  # generation is kept


def test_a_duplicate_sample_id_fails_the_dry_run(user_config, tmp_path):
    from mmgate.io import read_parquet

    golden = read_parquet(tmp_path / "golden.parquet")
    write_parquet(pd.concat([golden, golden.iloc[[0]]]), tmp_path / "dup.parquet", {})
    config = user_config(golden_set=str(tmp_path / "dup.parquet"))
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(config), check=False)
    assert proc.returncode != 0 and "duplicate sample_id" in proc.stdout + proc.stderr


def test_jobs_use_the_library_of_the_workflow_that_launched_them(user_config, tmp_path):
    import os

    other = tmp_path / "other_site" / "mmgate"  # another mmgate, first on the job's path
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise ImportError('the wrong mmgate was imported')\n")
    proc = subprocess.run([str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "results/token_space/ckpt=mine/check.parquet",
                           "--cores", "1", "-d", str(tmp_path / "run"), "--configfile", str(user_config())],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(other.parent)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_parquet(tmp_path / "run/results/token_space/ckpt=mine/check.parquet")["match"].any()


def test_generation_is_planned_over_its_subset_and_ablation_over_every_row(user_config, mini_demo, tmp_path):
    config = user_config(generation={"samples_per_task": 3}, sharding={"samples_per_shard": 2, "shards_per_job": 1},
                         stage2={"shards": [stage2_shard(mini_demo, tmp_path / "stage2.parquet")]},
                         model={"base": str(mini_demo["stage3"]), "dtype": "float32", "gpus": 2})
    run = ("-d", str(tmp_path / "run"), "--configfile", str(config))
    snakemake("--cores", "1", "results/token_space/ckpt=mine/check.parquet", *run)  # P0.1 first, as a run would
    out = snakemake("-n", *run).stdout
    counts = job_counts(out)
    # 8 golden rows per task: generation 3 of them (2 shards per write task and mode), ablation all 8 (4 shards),
    # a block (a job) per shard
    assert {rule: n for rule, n in counts.items() if "_block_" in rule} == {
        **{f"generate_block_{i:03d}": 1 for i in range(2 * 2 * 2)}, **{f"decode_block_{i:03d}": 1 for i in range(2 * 2)},
        **{f"ablate_block_{i:03d}": 1 for i in range(4 * 4)}}, counts
    # model.gpus is what each model job asks for; decoding needs one
    jobs = re.findall(r"^(?:local)?rule (\w+):.*?resources: ([^\n]*)", out, re.M | re.S)
    gpus = {}
    for rule, resources in jobs:
        if "gpu=" in resources:
            gpus.setdefault(re.sub(r"_block_\d+$", "", rule), set()).add(re.search(r"gpu=(\d+)", resources).group(1))
    assert gpus == {"generate": {"2"}, "ablate": {"2"}, "decode": {"1"}}, gpus
    others = {rule: n for rule, n in counts.items() if "_block_" not in rule and rule != "total"}
    # the same shards in blocks of up to 5 per stage: 8 generation shards in 2, 16 ablation shards in 4, 4 decode in 1
    out = snakemake("-n", *run, "--config", "sharding={samples_per_shard: 2, shards_per_job: 5}").stdout
    counts = job_counts(out)
    assert {rule: n for rule, n in counts.items() if "block" in rule} == {
        "generate_block_000": 1, "generate_block_001": 1, **{f"ablate_block_{i:03d}": 1 for i in range(4)},
        "decode_block_000": 1}, counts
    assert {rule: n for rule, n in counts.items() if "_block_" not in rule and rule != "total"} == others, counts


COUNTING_DRIVER = '''
import atexit, collections, json, sys
sys.path.insert(0, sys.argv[1])
import mmgate.io
reads = collections.Counter()
read_parquet = mmgate.io.read_parquet
def counted(path, *args, **kwargs):
    reads[str(path)] += 1
    return read_parquet(path, *args, **kwargs)
mmgate.io.read_parquet = counted  # the golden set and the P0.1 tables are read through it
atexit.register(lambda: open(sys.argv[2], "w").write(json.dumps(reads)))
from snakemake.cli import main
main(sys.argv[3:])
'''


def test_a_dry_run_reads_the_golden_set_and_each_check_table_once_whatever_the_checkpoint_count(user_config, tmp_path):
    """Parsing cost per checkpoint: no parquet is read once per job (DAG build of 200 checkpoints:
    benchmarks/dag_build.py). Planned jobs grow by the same count per passed checkpoint."""
    import json
    import os

    names = ["checkpoint-100", "checkpoint-200", "checkpoint-300", "broken-400"]
    run = tmp_path / "run"
    for name in names:
        (tmp_path / "ckpts" / name).mkdir(parents=True)
        (tmp_path / "ckpts" / name / "COMPLETE").write_text("")
        check = run / "results" / "token_space" / f"ckpt={name}" / "check.parquet"
        check.parent.mkdir(parents=True)
        pd.DataFrame({"artifact": ["checkpoint"], "match": [not name.startswith("broken")]}).to_parquet(check)
    config = user_config(checkpoints={}, checkpoint_glob=str(tmp_path / "ckpts" / "*"), completion_marker="COMPLETE",
                         sharding={"samples_per_shard": 4})
    driver, counts = tmp_path / "driver.py", tmp_path / "reads.json"
    driver.write_text(COUNTING_DRIVER)
    # The SLURM executor plugin runs `scontrol show config` on import: 9 s where SLURM is installed but down
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(BIN / "python"), str(driver), str(REPO / "src"), str(counts), "-n", "--snakefile",
                           str(REPO / "Snakefile"), "-d", str(run), "--configfile", str(config)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reads = json.loads(counts.read_text())
    assert reads.pop(str(tmp_path / "golden.parquet")) == 1, reads
    assert sorted(reads.values()) == [1] * len(names), reads  # each checkpoint's P0.1 table, once
    jobs = job_counts(proc.stdout)
    # 8 golden rows per task, 4 per shard: per passed checkpoint 8 generation shards (2 write tasks x 2 modes x 2)
    # and 8 ablation shards (4 tasks x 2) in blocks of 4 (the default), 4 decode shards in one block, one
    # fingerprint, one ablation summary and the report; the failed one plans its report only
    per_checkpoint = {"generate_block_000": 1, "generate_block_001": 1, "ablate_block_000": 1, "ablate_block_001": 1,
                      "decode_block_000": 1, "fingerprint": 1, "ablation_summary": 1}
    assert {rule: jobs.get(rule) for rule in per_checkpoint} == {rule: 3 * n for rule, n in per_checkpoint.items()}, jobs
    assert jobs["report"] == len(names) and jobs["total"] == 3 * 8 + 1 + 3, jobs  # + trend, verdicts and all


@pytest.mark.slow
def test_a_checkpoint_added_to_an_explicit_list_plans_only_its_own_jobs_and_the_trend(zoo_run, tmp_path):
    """Listing checkpoints by name (no glob) is the common way to verify a few of them: one more entry must
    not rerun the reports of those already verified (the list is no param of theirs)."""
    from conftest import CONFIG, ZOO_CONFIG

    listed = yaml.safe_load(ZOO_CONFIG.read_text())["checkpoints"]
    grown = tmp_path / "one-more.yaml"
    grown.write_text(yaml.safe_dump({"checkpoints": {**listed, "late": listed["good"]}}))
    proc = snakemake("-n", "-d", str(zoo_run), "--configfile", str(CONFIG), str(ZOO_CONFIG),
                     str(zoo_run / "test-overrides.yaml"), str(grown))
    planned = [o for line in re.findall(r"^    output: (.*)$", proc.stdout, re.M) for o in line.split(", ")]
    per_checkpoint = [o for o in planned if "ckpt=" in o]
    assert per_checkpoint and all("ckpt=late/" in o for o in per_checkpoint), per_checkpoint
    assert job_counts(proc.stdout)["trend"] == 1


@pytest.fixture(scope="module")
def finished_user_run(tmp_path_factory, mini_demo):
    """A user's own checkpoint (not the demo's) verified end to end, with a training log beside it."""
    import shutil

    from conftest import stage2_shard

    from mmgate import demo
    from mmgate.io import write_parquet

    root = tmp_path_factory.mktemp("user_run")
    ckpt = root / "mine"
    shutil.copytree(mini_demo["ckpt"], ckpt)
    (ckpt / "train_log.csv").write_text("step,loss,t2a_avg,t2i_avg,a2t_avg,i2t_avg\n0,3,3,3,3,3\n10,2,2,2,2,2\n")
    golden = demo.golden_frame(demo.SyntheticWorld(mini_demo["space"], seed=0), 8, seed=1)
    write_parquet(golden, root / "golden.parquet", {})
    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = {"token_space": str(mini_demo["root"] / "token_space.json"), "golden_set": str(root / "golden.parquet"),
              "checkpoints": {"mine": str(ckpt)}, "completion_marker": None,
              "stage2": {"shards": [stage2_shard(mini_demo, root / "stage2.parquet")]}, "stage3_init": None,
              "model": {"base": str(mini_demo["stage3"]), "dtype": "float32"}, "templates": bundled["templates"],
              "decoders": bundled["decoders"], "gates": {"min_n": 8},
              "report": {"training_log": "{checkpoint_dir}/train_log.csv"}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "-d", str(root / "run"), "--configfile", str(root / "config.yaml"))
    return root


def planned(root, config="config.yaml"):
    """The jobs a dry run plans, by rule (its "Job stats" table)."""
    proc = snakemake("-n", "-d", str(root / "run"), "--configfile", str(root / config))
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return set()
    table = out[out.index("Job stats:"):].split("\n\n")[0]
    return {m for m in re.findall(r"^(\w+)\s+\d+$", table, re.M) if m != "total"}


@pytest.mark.slow
def test_an_untouched_checkpoint_is_never_verified_again(finished_user_run):
    assert planned(finished_user_run) == set()


@pytest.mark.slow
def test_a_reordered_config_with_defaults_written_out_reruns_nothing(finished_user_run):
    config = yaml.safe_load((finished_user_run / "config.yaml").read_text())
    config["generation"] = {"removed_mass_every": 16, "temperature": 1, "top_k": 0}  # defaults, 1 for 1.0
    config = dict(reversed(list(config.items())))
    (finished_user_run / "same.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert planned(finished_user_run, "same.yaml") == set()


@pytest.mark.slow
def test_samples_per_task_above_the_golden_rows_reruns_nothing_and_says_so(finished_user_run):
    config = yaml.safe_load((finished_user_run / "config.yaml").read_text())
    config["generation"] = {"samples_per_task": 100000}
    (finished_user_run / "clamped.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "-d", str(finished_user_run / "run"), "--configfile", str(finished_user_run / "clamped.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert "generation.samples_per_task = 100000 is at least every write task's golden rows (8)" in proc.stderr


@pytest.mark.slow
def test_the_run_records_its_checkpoints_for_inspect_and_check(finished_user_run):
    record = json.loads((finished_user_run / "run/results/.mmgate-run.json").read_text())
    assert record["checkpoints"] == ["mine"]


@pytest.mark.slow
def test_an_edited_training_log_reruns_the_report_only(finished_user_run):
    log = finished_user_run / "mine" / "train_log.csv"
    log.write_text(log.read_text() + "20,nan,nan,1,1,1\n")
    assert planned(finished_user_run) == {"report", "trend", "verdicts", "all"}


@pytest.mark.slow
def test_a_checkpoint_saved_again_in_place_is_verified_again(finished_user_run):
    import os

    weights = finished_user_run / "mine" / "adapter_model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # the Trainer saved it again
    assert "token_space" in planned(finished_user_run)  # P0.1 first: the new weights may hold NaN
    root = finished_user_run
    snakemake("check_token_space", "--cores", "2", "-d", str(root / "run"), "--configfile", str(root / "config.yaml"))
    jobs = planned(finished_user_run)  # then every job that reads the model
    assert any(j.startswith("generate_block") for j in jobs) and any(j.startswith("ablate_block") for j in jobs)


@pytest.mark.slow
def test_a_deleted_shard_is_remade_and_inspect_warns_until_it_is(finished_user_run):
    shard = finished_user_run / "run/results/ablate/ckpt=mine/task=a2t/part-000.parquet"
    shard.unlink()
    assert any(job.startswith("ablate_block") for job in planned(finished_user_run))
    proc = subprocess.run([str(BIN / "mmgate"), "inspect", str(finished_user_run / "run/results")], capture_output=True,
                          text=True)
    assert "mine: 1 file(s) its report rests on are missing, e.g. results/ablate/ckpt=mine/task=a2t/part-000.parquet" in proc.stdout


def test_a_checkpoint_path_with_wildcard_characters_is_named_and_the_others_are_planned(user_config, mini_demo, tmp_path):
    odd = tmp_path / "run-{x}"
    shutil.copytree(mini_demo["ckpt"], odd)
    config = user_config(checkpoints={"mine": str(mini_demo["ckpt"]), "odd": str(odd)})
    proc = snakemake("-n", "-d", str(tmp_path / "run"), "--configfile", str(config))
    assert "odd: " in proc.stderr and "which Snakemake reads as wildcards or path variables" in proc.stderr
    assert "ckpt=mine" in proc.stdout and "ckpt=odd" not in proc.stdout


@pytest.mark.slow
def test_the_readmes_check_token_space_command_runs_as_written(finished_user_run):
    """README: `snakemake check_token_space --cores 2 --configfile mine.yaml`, run in a checkout."""
    line = re.search(r"`(snakemake check_token_space [^`]*--configfile mine\.yaml)`", (REPO / "README.md").read_text())
    assert line, "README.md lost its check_token_space command"
    shutil.copy(finished_user_run / "config.yaml", finished_user_run / "run" / "mine.yaml")
    args = line.group(1).split()[1:]
    proc = snakemake(*args, "-d", str(finished_user_run / "run"), cwd=finished_user_run / "run")
    assert proc.returncode == 0
