"""The mmgate command line as a user meets it: --version, and help on every option."""

import argparse

import pytest

from mmgate import cli


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {}

    def capture(self, *args, **kwargs):
        parsers["top"] = self
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(SystemExit):
            cli.main([])
    top = parsers["top"]
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"mmgate": top, **sub.choices}


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("mmgate ")


@pytest.mark.parametrize("name", ["mmgate", "demo", "token-space", "golden", "inspect", "check", "install-profile"])
def test_every_option_of_every_command_has_help(name):
    parser = subcommand_parsers()[name]
    bare = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert not bare, f"{name}: options without help: {bare}"


def report_tree(root, names):
    """results/report/ckpt=<name>/gates.json for each name, every P0 gate passing."""
    import json

    for step, name in enumerate(names):
        folder = root / "results" / "report" / f"ckpt={name}"
        folder.mkdir(parents=True)
        gates = [{"gate": g, "verdict": "PASS", "reasons": [], "evidence": []} for g in ("P0.1", "P0.2", "P0.3", "P0.4")]
        (folder / "gates.json").write_text(json.dumps({"checkpoint": name, "step": step, "overall": "ready to promote",
                                                       "gates": gates}))
    return root / "results"


def failing(results, name):
    import json

    path = results / "report" / f"ckpt={name}" / "gates.json"
    report = json.loads(path.read_text())
    report["gates"][1].update(verdict="FAIL", reasons=["t2a: broken"])
    path.write_text(json.dumps(report))


def test_check_judges_only_the_checkpoints_of_the_last_runs_config(tmp_path, capsys):
    results = report_tree(tmp_path, ["kept", "removed"])
    failing(results, "removed")
    cli.record_plan(str(results), ["kept"], ["mine.yaml"])
    assert cli.main(["check", str(results)]) == 0
    out = capsys.readouterr().out
    assert "not in this run's config (not judged): removed" in out and "kept: PASS" in out


def test_check_judges_the_checkpoints_a_config_names(tmp_path, capsys):
    import yaml

    results = report_tree(tmp_path, ["kept", "removed"])
    failing(results, "removed")
    (tmp_path / "kept").mkdir()
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"checkpoints": {"kept": str(tmp_path / "kept")}}))
    assert cli.main(["check", str(results), "--config", str(tmp_path / "mine.yaml")]) == 0
    assert cli.main(["check", str(results)]) == 1  # no record of a plan: every report is judged


def test_inspect_warns_about_files_a_report_rests_on_that_are_gone(tmp_path, capsys):
    import json

    results = report_tree(tmp_path, ["mine"])
    path = results / "report" / "ckpt=mine" / "gates.json"
    report = json.loads(path.read_text())
    report["gates"][3]["evidence"] = ["results/ablate/ckpt=mine/task=t2a/part-000.parquet"]
    path.write_text(json.dumps(report))
    cli.main(["inspect", str(results)])
    assert ("warning: mine: 1 file(s) its report rests on are missing, e.g. "
            "results/ablate/ckpt=mine/task=t2a/part-000.parquet; rerun snakemake") in capsys.readouterr().out


def set_gate(results, name, gate_id, **fields):
    import json

    path = results / "report" / f"ckpt={name}" / "gates.json"
    report = json.loads(path.read_text())
    next(g for g in report["gates"] if g["gate"] == gate_id).update(fields)
    path.write_text(json.dumps(report))


FREE_RUN_WARN = dict(verdict="WARN", failures=["free_violation"], task_verdicts={"t2a": "WARN", "t2i": "WARN"},
                     reasons=["t2a: free run: 9 % of tokens violate: free runs need constrained decoding"])


@pytest.mark.parametrize("flags,status", [([], 0), (["--strict"], 0), (["--require-free-compliance"], 1)])
def test_check_fails_free_run_warnings_only_when_free_compliance_is_required(tmp_path, capsys, flags, status):
    results = report_tree(tmp_path, ["good"])
    set_gate(results, "good", "P0.2", **FREE_RUN_WARN)
    assert cli.main(["check", str(results), *flags]) == status
    assert ("P0.2: t2a: free run" in capsys.readouterr().out) == bool(status)


@pytest.mark.parametrize("fields,doubt", [
    (dict(verdict="WARN", failures=["small_n"], underpowered=True, reasons=["t2a: n=64 < min_n=256"]), "too few samples"),
    (dict(verdict="PASS", notes=["t2a: delta_empty 0.12 passes 0.1 but its 95 % CI [0.08, 0.16] straddles it"]),
     "straddles it"),
    (dict(verdict="WARN", failures=["no_free_run"], reasons=["no free-mode run"]), "no free-mode run"),
])
def test_check_strict_fails_a_verdict_resting_on_too_little_evidence(tmp_path, capsys, fields, doubt):
    results = report_tree(tmp_path, ["small"])
    set_gate(results, "small", "P0.4", **fields)
    assert cli.main(["check", str(results)]) == 0
    assert cli.main(["check", str(results), "--strict"]) == 1
    assert doubt in capsys.readouterr().out.split("small: FAIL")[1]


def test_check_and_inspect_take_a_checkpoint_name_as_diff_does(tmp_path, capsys, monkeypatch):
    results = report_tree(tmp_path, ["good", "bad"])
    failing(results, "bad")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "good"]) == 0 and cli.main(["check", "bad"]) == 1
    assert cli.main(["inspect", "good"]) == 0
    assert cli.main(["check", "good", "--results", str(results)]) == 0
    capsys.readouterr()
    assert cli.main(["check", "absent"]) == cli.USAGE_ERROR
    assert "checkpoint named 'absent'" in capsys.readouterr().err


def test_inspect_lists_the_files_behind_the_verdict_first_and_says_how_many_it_left_out(tmp_path, capsys):
    results = report_tree(tmp_path, ["good"])
    evidence = [f"results/generate/ckpt=good/task={t}/mode={m}/part-00{i}.parquet"
                for m in ("constrained", "free") for t in ("t2a", "t2i") for i in range(2)]
    set_gate(results, "good", "P0.2", evidence=evidence, **FREE_RUN_WARN)
    cli.main(["inspect", str(results)])
    looked = [line.split("look at ")[1] for line in capsys.readouterr().out.splitlines() if "look at" in line]
    assert looked == [f"results/generate/ckpt=good/task=t2a/mode=free/part-00{i}.parquet" for i in range(2)] + [
        "results/generate/ckpt=good/task=t2i/mode=free/part-000.parquet"]
    cli.main(["inspect", str(results)])
    assert f"and 5 more (every file: mmgate inspect {results} --all)" in capsys.readouterr().out
    cli.main(["inspect", str(results), "--all"])
    assert sorted(line.split("look at ")[1] for line in capsys.readouterr().out.splitlines() if "look at" in line) == sorted(evidence)


def test_every_overall_line_names_the_p0_gate_that_decided_it(tmp_path, capsys):
    import json

    results = report_tree(tmp_path, ["deaf"])
    set_gate(results, "deaf", "P0.2", **FREE_RUN_WARN)
    set_gate(results, "deaf", "P0.4", verdict="FAIL", tier="P0", task_verdicts={"t2a": "FAIL", "t2i": "FAIL"},
             reasons=["t2a: prompt unused"])
    path = results / "report/ckpt=deaf/gates.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "overall": "not valid"}))
    line = "not valid: P0.4 failed (t2a, t2i); free runs need constrained decoding"
    cli.main(["inspect", str(results)])
    table, *_ = capsys.readouterr().out.split("\n\n")
    assert table.splitlines()[1].endswith(line)
    cli.main(["check", str(results)])
    assert f"overall: {line})" in capsys.readouterr().out
    assert cli.end_of_run(["deaf"], str(results)).splitlines()[2].endswith(line)


def test_every_command_help_page_says_what_the_command_does():
    for name, parser in subcommand_parsers().items():
        assert parser.description and len(parser.description) > 20, name
    assert "validate inputs before a cluster run" not in subcommand_parsers()["mmgate"].description


def test_golden_labels_its_counts(mini_demo, tmp_path, capsys):
    from mmgate import demo
    from mmgate.io import write_parquet

    golden = tmp_path / "golden.parquet"
    write_parquet(demo.golden_frame(demo.SyntheticWorld(mini_demo["space"], seed=0), 2, seed=1), golden, {})
    assert cli.main(["golden", str(golden), "--token-space", str(mini_demo["root"] / "token_space.json")]) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert header.split() == ["task", "examples", "shortest", "expected", "output", "longest"]


def test_install_profile_elsewhere_names_the_path_snakemake_needs(tmp_path, capsys):
    assert cli.main(["install-profile", "--dest", str(tmp_path / "profiles")]) == 0
    assert f"snakemake --profile {tmp_path / 'profiles' / 'slurm'}`" in capsys.readouterr().out


def test_the_zoo_table_without_reports_is_a_usage_error(tmp_path, capsys):
    from mmgate import zoo

    assert zoo.main([str(tmp_path)]) == cli.USAGE_ERROR
