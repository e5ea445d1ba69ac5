"""The README's "Adding a gate" walkthrough, applied as written to a copy of this repository and run."""

import json
import re
import shutil

import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake

STEP = re.compile(r"^#### \d+\. `(?P<path>[^`]+)`: (?P<what>.*)$", re.M)
BLOCK = re.compile(r"^```\w*\n(.*?)^```", re.M | re.S)


def walkthrough() -> list[tuple[str, list[str], list[str]]]:
    """(file, anchor lines, code blocks) of each step of the README's walkthrough."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Adding a gate"):readme.index("## Browsing results")]
    steps = list(STEP.finditer(section))
    return [(step["path"], re.findall(r"above `([^`]+)`", step["what"]),
             BLOCK.findall(section[step.end():steps[i + 1].start() if i + 1 < len(steps) else len(section)]))
            for i, step in enumerate(steps)]


def apply(root, plugins, steps):
    """Each step's blocks into `root` (a repository copy) above its anchors; a step without one is a new file in `plugins`."""
    for path, anchors, blocks in steps:
        if not anchors:
            (plugins / path).write_text(blocks[0])
            continue
        target = root / path
        lines = target.read_text().splitlines(keepends=True)
        for anchor, block in zip(anchors, blocks, strict=True):
            at = [i for i, line in enumerate(lines) if line.strip().startswith(anchor)]
            assert len(at) == 1, f"{path}: the anchor {anchor!r} is not on exactly one line"
            lines[at[0]:at[0]] = [block]
        target.write_text("".join(lines))


def test_the_walkthrough_touches_five_files_each_at_an_anchor_that_exists_once():
    steps = walkthrough()
    assert len(steps) == len({path for path, _, _ in steps}) <= 5
    for path, anchors, blocks in steps:
        assert blocks and len(blocks) == max(1, len(anchors)), path
        for anchor in anchors:
            lines = (REPO / path).read_text().splitlines()
            assert sum(line.strip().startswith(anchor) for line in lines) == 1, (path, anchor)


@pytest.mark.slow
def test_a_gate_over_a_new_scored_stage_runs_from_the_walkthroughs_five_files(user_config, mini_demo, tmp_path):
    from conftest import stage2_shard

    copy, plugins = tmp_path / "repo", tmp_path / "plugins"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "results", "resources", ".snakemake",
                                                              "logs", "__pycache__", "*.egg-info"))
    plugins.mkdir()
    apply(copy, plugins, walkthrough())
    config = user_config(stage2={"shards": [stage2_shard(mini_demo, tmp_path / "stage2.parquet")]})
    run, env = tmp_path / "run", {"PYTHONPATH": str(plugins)}
    proc = snakemake("--cores", "2", "-d", str(run), "--configfile", str(config), snakefile=copy / "Snakefile", env=env)
    assert "rule score_clap" in proc.stdout + proc.stderr

    scores = pd.read_parquet(run / "results" / "clap")  # a folder of its own, read as one table
    assert len(scores) == 8 and set(scores["task"]) == {"t2a"} and scores["similarity"].notna().any()
    gates = {g["gate"]: g for g in json.loads((run / "results/report/ckpt=mine/gates.json").read_text())["gates"]}
    values = gates["P1.4"]["values"]["t2a"]
    assert values["n"] == scores["similarity"].notna().sum() and values["similarity"] == pytest.approx(scores["similarity"].mean())
    assert gates["P1.4"]["verdict"] in ("PASS", "WARN") and "i2t" not in gates["P1.4"]["values"]

    # its pass mark is a config key like any other: raising it reruns the report, and the gate fails
    raised = yaml.safe_load(config.read_text())
    raised["gates"] = {"min_clap_similarity": 2.0}
    config.write_text(yaml.safe_dump(raised))
    proc = snakemake("--cores", "2", "-d", str(run), "--configfile", str(config), snakefile=copy / "Snakefile", env=env)
    assert "rule score_clap" not in proc.stdout + proc.stderr
    report = json.loads((run / "results/report/ckpt=mine/gates.json").read_text())
    p14 = next(g for g in report["gates"] if g["gate"] == "P1.4")
    assert p14["verdict"] == "FAIL" and "< 2.0" in p14["reasons"][0] and report["overall"] != "ready to promote"
    assert "Outputs ignore their prompts" in " ".join(p14["fixes"])
