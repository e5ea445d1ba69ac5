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
