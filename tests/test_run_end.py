"""How a run ends: the verdicts page of `snakemake --report`, and the verdict table after a run with
nothing to do (Snakemake calls no onsuccess then)."""

import json
import re
import shutil
import zipfile
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import pytest

from conftest import CONFIG, REPO, ZOO_CONFIG, snakemake


class Rows(HTMLParser):
    """The verdicts table of verdicts.html: each row's cells' text and classes, and its link."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell, self._in_table = [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "verdicts":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append({"cells": [], "classes": [], "link": None})
        elif self._in_table and tag in ("td", "th"):
            self._cell = []
            self.rows[-1]["classes"].append(attrs.get("class") or "")
        elif self._in_table and tag == "a":
            self.rows[-1]["link"] = attrs
        elif self._in_table and tag == "span" and self._cell is not None:
            self.rows[-1]["classes"][-1] = attrs.get("class") or ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._in_table = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table(html: str) -> tuple[list[str], list[dict]]:
    parser = Rows()
    parser.feed(html)
    head, *rows = parser.rows
    return head["cells"], rows


def gates_json(path: Path, name: str, step, verdicts: dict, overall: str) -> str:
    gates = [{"gate": g, "tier": g.split(".")[0] if "." in g else g, "verdict": v,
              "failures": ["free_violation"] if (g, v) == ("P0.2", "WARN") else []} for g, v in verdicts.items()]
    path.mkdir(parents=True)
    (path / "gates.json").write_text(json.dumps({"checkpoint": name, "step": step, "overall": overall, "gates": gates}))
    return str(path / "gates.json")


def test_report_ids_are_snakemakes():
    from snakemake.common import get_report_id
    from snakemake.report import FILE_HASH_PREFIX_LEN

    from mmgate.runend import report_id

    path = "results/report/ckpt=good/report.html"
    assert report_id(path) == get_report_id(path)[:FILE_HASH_PREFIX_LEN]


def test_the_verdicts_page_has_every_checkpoints_row_by_step_with_its_overall_line_and_page(tmp_path, monkeypatch):
    from mmgate.gates import overall_line
    from mmgate.runend import render_verdicts, report_id

    monkeypatch.chdir(tmp_path)  # paths as the rule names them, relative to the working directory
    passing = {"P0.1": "PASS", "P0.2": "WARN", "P0.3": "PASS", "P0.4": "PASS", "P1.1": "PASS", "P1.2": "PASS",
               "P1.3": "PASS", "TD": "PASS"}
    paths = [
        gates_json(Path("results/report/ckpt=late"), "late", 200, passing, "ready to promote"),
        gates_json(Path("results/report/ckpt=deaf"), "deaf", None, {**passing, "P0.4": "FAIL", "P1.2": "FAIL"},
                   "not valid"),
        gates_json(Path("results/report/ckpt=early"), "early", 100, {"P0.1": "FAIL"}, "not valid"),
    ]
    head, rows = table(render_verdicts(paths))
    assert head == ["checkpoint", "step", "P0.1", "P0.2", "P0.3", "P0.4", "P1.1", "P1.2", "P1.3", "TD", "overall"]
    assert [r["cells"][0] for r in rows] == ["early", "late", "deaf"]  # by step; no step last
    early, late, deaf = rows
    assert early["cells"][1:4] == ["100", "FAIL", "-"] and early["classes"][2] == "FAIL"
    assert deaf["cells"][5] == "FAIL" and deaf["classes"][5] == "FAIL" and deaf["cells"][3] == "WARN"
    for row, path in zip((early, late, deaf), (paths[2], paths[0], paths[1])):
        assert row["cells"][-1] == overall_line(json.loads(Path(path).read_text()))
        page = str(Path(path).with_name("report.html"))
        assert row["link"]["href"] == f"ckpt={row['cells'][0]}/report.html"  # beside the table in results/report/
        assert row["link"]["data-in-report"] == f"../{report_id(page)}/report.html"  # inside snakemake --report
    assert deaf["cells"][-1].startswith("not valid: P0.4 failed") and "FAIL" in deaf["classes"][-1]
    assert "PASS" in late["classes"][-1]


@pytest.fixture(scope="module")
def finished(zoo_run, tmp_path_factory):
    """A copy of the finished demo + fault-zoo run, brought up to date (a reused run dir may predate
    the verdicts page), and the arguments that run it."""
    workdir = tmp_path_factory.mktemp("run_end") / "run"
    shutil.copytree(zoo_run, workdir, symlinks=True)
    args = ["-d", str(workdir), "--configfile", str(CONFIG), str(ZOO_CONFIG), str(workdir / "test-overrides.yaml")]
    snakemake("--cores", "2", *args)
    return workdir, args


@pytest.mark.slow
def test_a_run_with_nothing_to_do_ends_with_the_verdict_table(finished):
    workdir, args = finished
    names = sorted(p.name.removeprefix("ckpt=") for p in (workdir / "results/report").glob("ckpt=*"))
    proc = snakemake("--cores", "2", *args)
    out = proc.stdout + proc.stderr
    assert "Nothing to be done" in out and "mmgate: verdicts:" in proc.stderr, out[-3000:]
    tail = proc.stderr[proc.stderr.index("Nothing to be done"):]
    assert "mmgate: verdicts:" in tail  # the last thing the run says
    table = tail[tail.index("mmgate: verdicts:"):]
    for name in names:
        line = re.search(rf"^{re.escape(name)}\s+(PASS|FAIL|WARN|SKIP).*$", table, re.M)
        assert line and line.group(0).endswith("(unchanged)"), table
    assert "results/report/ckpt=<checkpoint>/report.html" in table
    # a dry run of the finished workflow still plans no job and prints no table
    dry = snakemake("-n", *args)
    assert "Nothing to be done" in dry.stdout + dry.stderr and "Job stats" not in dry.stdout + dry.stderr
    assert "mmgate: verdicts:" not in dry.stdout + dry.stderr
    # --no-hooks: no onsuccess, and no table after nothing to do either
    assert "mmgate: verdicts:" not in snakemake("--cores", "2", "--no-hooks", *args).stderr


@pytest.mark.slow
def test_snakemake_report_has_every_checkpoints_verdict_and_links_its_page_without_mimetype_warnings(finished):
    from mmgate.gates import overall_line

    workdir, args = finished
    out = workdir / "report.zip"
    proc = snakemake("--report", str(out), *args)
    said = proc.stdout + proc.stderr
    assert "mimetype" not in said.lower(), said
    archive = zipfile.ZipFile(out)
    names = archive.namelist()
    page = next(n for n in names if n.endswith("/verdicts.html"))
    head, rows = table(archive.read(page).decode())
    reports = {p.parent.name.removeprefix("ckpt="): json.loads(p.read_text())
               for p in (workdir / "results/report").glob("ckpt=*/gates.json")}
    assert sorted(r["cells"][0] for r in rows) == sorted(reports)
    for row in rows:
        name = row["cells"][0]
        gates = {g["gate"]: g["verdict"] for g in reports[name]["gates"]}
        assert dict(zip(head[2:-1], row["cells"][2:-1])) == {g: gates.get(g, "-") for g in head[2:-1]}
        assert row["cells"][-1] == overall_line(reports[name])
        # the link, as the page rewrites it inside the zip, opens this checkpoint's own report page
        resolved = _resolve(PurePosixPath(page).parent, row["link"]["data-in-report"])
        assert resolved in names, (name, resolved)
        assert archive.read(resolved) == (workdir / f"results/report/ckpt={name}/report.html").read_bytes()
    # the landing page points at the verdicts page, and the gate tables are still there to download
    index = next(n for n in names if n.count("/") == 1 and n.endswith("report.html"))
    assert "verdicts.html" in archive.read(index).decode()
    assert sum(n.endswith("gates.parquet") for n in names) == len(reports)


def _resolve(folder: PurePosixPath, href: str) -> str:
    parts = list(folder.parts)
    for part in PurePosixPath(href).parts:
        if part == "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)
