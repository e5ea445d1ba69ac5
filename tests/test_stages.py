"""The catalogue (mmgate.stages): one declaration per stage, from which every path is derived."""

import ast
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from conftest import REPO, browsing_problems
from mmgate.io import read_parquet, write_parquet
from mmgate.stages import PAGES, STAGES, TABLES, conform, page

KEYS = {"ckpt": "step-100", "task": "t2a", "mode": "free", "shard": "007"}


@pytest.mark.parametrize("name", STAGES)
def test_each_stage_parses_back_the_keys_of_its_own_paths(name):
    stage = STAGES[name]
    keys = {key: KEYS[key] for key in stage.keys}
    assert stage.parse("/anywhere/" + stage.path(**keys)) == keys
    assert stage.results_of("/anywhere/" + stage.path(**keys)) == Path("/anywhere/results")


def test_every_stage_has_a_folder_of_its_own_apart_from_the_pages_and_the_media():
    folders = [s.folder for s in STAGES.values()] + [s.media.split("/")[0] for s in STAGES.values() if s.media]
    pages = {Path(p).parts[1] for p in PAGES.values()}
    assert len(set(folders)) == len(folders) and not set(folders) & pages


def test_a_file_of_one_stage_is_no_file_of_another():
    for name, stage in STAGES.items():
        path = stage.path(**{key: KEYS[key] for key in stage.keys})
        assert [other for other, s in STAGES.items() if s.parse(path) is not None] == [name]


def test_every_table_the_report_loads_is_a_stage_but_the_optional_training_log():
    assert {name for name, table in TABLES.items() if table.required} == {s.table for s in STAGES.values() if s.table}


def test_a_written_table_has_every_column_of_its_stage_in_order_and_of_its_type(tmp_path):
    path = tmp_path / STAGES["fingerprint"].path(ckpt="c", task="t2a")
    write_parquet(pd.DataFrame({"sample_id": ["a"], "decoded": [True], "rms": [0.5]}), path, {}, STAGES["fingerprint"])
    import pyarrow.parquet as pq

    assert pq.read_schema(path).remove_metadata().equals(STAGES["fingerprint"].schema)
    row = read_parquet(path).iloc[0]
    assert row["rms"] == 0.5 and pd.isna(row["phash"])  # an image column of an audio task: null, not absent


def test_a_column_its_stage_does_not_declare_is_refused_naming_where_to_declare_it():
    with pytest.raises(ValueError, match=r"column\(s\) \['clap'\].*STAGES\['collapse'\]\.columns"):
        conform(pd.DataFrame({"n": [3], "clap": [0.2]}), STAGES["collapse"])


def test_a_value_that_does_not_fit_its_declared_type_is_refused_not_truncated():
    with pytest.raises(pa.ArrowInvalid):
        conform(pd.DataFrame({"n": [3.5]}), STAGES["collapse"])


def test_a_page_is_found_below_any_results_folder():
    assert page("report_html", "/runs/x/results", ckpt="good") == Path("/runs/x/results/report/ckpt=good/report.html")


# ------------------------------------------------------------------ no path is written twice

# What a stage path looks like when it is spelled out instead of derived from mmgate.stages.
PATH_LITERALS = re.compile(
    r"results/(token_space|stage2|generate|decode|media|fingerprint|collapse|ablate|ablation_summary|gates|trend|report)\b"
    r"|part-\{|ckpt=|/(check|gates|trend|fingerprints|collapse|summary|hashes)\.parquet|/gates\.json|/(report|trend|verdicts)\.html")


def code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each string in a Python file's code: docstrings (and their doctests) are documentation."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def rule_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each quoted string on a rule file's code lines (not comments or docstrings)."""
    strings = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip().startswith(("#", '"""')):
            strings += [(number, s) for s in re.findall(r'"[^"]*"|\'[^\']*\'', line.split(" # ")[0])]
    return strings


def test_no_stage_or_page_path_is_spelled_out_outside_the_catalogue():
    found = []
    for path in sorted((REPO / "src" / "mmgate").glob("*.py")) + sorted((REPO / "workflow" / "scripts").glob("*.py")):
        if path.name != "stages.py":
            found += [f"{path.relative_to(REPO)}:{n}: {s!r}" for n, s in code_strings(path) if PATH_LITERALS.search(s)]
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]:
        found += [f"{path.relative_to(REPO)}:{n}: {s.strip()}" for n, s in rule_strings(path) if PATH_LITERALS.search(s)]
    assert not found, "derive these from mmgate.stages:\n" + "\n".join(found)


# ------------------------------------------------------------------ browsing a finished run

@pytest.mark.slow
def test_every_folder_of_a_finished_run_reads_as_one_table_of_its_stage(zoo_run):
    assert not browsing_problems(zoo_run / "results")


@pytest.mark.slow
def test_media_live_outside_every_dataset_and_each_decode_row_names_its_file(zoo_run):
    decoded = pd.read_parquet(zoo_run / "results" / STAGES["decode"].folder)
    files = decoded["file"].dropna()
    assert len(files) and all((zoo_run / "results" / f).is_file() for f in files)
    assert {Path(f).parts[0] for f in files} == {STAGES["decode"].media.split("/")[0]}


def test_the_readme_lists_every_folder_of_the_catalogue_where_it_shows_the_layout():
    readme = (REPO / "README.md").read_text()
    browsing = readme[readme.index("## Browsing results"):readme.index("## On a SLURM cluster")]
    layout = readme[readme.index("`results/` (git-ignored)"):]
    for stage in STAGES.values():
        assert f"| `{stage.folder}/` |" in browsing, stage.name
        shown = stage.path(ckpt="<c>", task="<t>", mode="<m>", shard="NNN")  # as the layout block writes keys
        assert shown in layout, (stage.name, shown)


# The data contract: every stage's columns and types as a reader sees them. A change here is a change
# users' queries see (say it in docs/changelog.md); mmgate.stages must agree with it.
CONTRACT = {
    "stage2": (
        "kind:str name:str path:str source:str hash:str expected:str found:str match:bool detail:str "
        "fix:str"),
    "check": (
        "kind:str name:str path:str source:str hash:str expected:str found:str match:bool detail:str "
        "fix:str"),
    "generate": (
        "sample_id:str prompt_hash:str generated_ids:ids expected_len:int budget:int n_generated:int "
        "emitted_end:bool end_position:int ragged_tail:int out_of_range:int out_of_range_pct:float "
        "wrong_slot:int first_violation:int slot_counts:ids other_layout_slots:int layout:str "
        "removed_mass_mean:float removed_mass_max:float removed_mass_first:float "
        "removed_mass_peak:float overridden_share:float seed:int batch_index:int "
        "generation_seconds:float tokens_per_second:float"),
    "decode": (
        "sample_id:str ok:bool reason:str sample_rate:int channels:int samples:int duration:float "
        "width:int height:int file:str decode_seconds:float"),
    "fingerprint": (
        "sample_id:str decoded:bool reason:str n_tokens:int unique_token_ratio:float distinct_2:float "
        "longest_loop_frames:int codebook_usage:float rms:float peak:float clipping_share:float "
        "zero_crossing_rate:float mel_variance:float spectral_flatness:float silent:bool noise:bool "
        "phash:str dhash:str mean_r:float var_r:float mean_g:float var_g:float mean_b:float "
        "var_b:float duplicate_of:str near_duplicate:bool"),
    "collapse": (
        "n:int unique_outputs:int identical_groups:int unique_ratio:float unique_code_ratio:float "
        "near_duplicate_pairs:int near_duplicate_share:float silent_share:float noise_share:float "
        "loop_share:float collapsed:bool"),
    "ablate": (
        "sample_id:str condition:str loss:float n_target_tokens:int input_hash:str target_hash:str "
        "n_context_tokens:int reason:str"),
    "ablation_summary": (
        "condition:str n:int mean_loss_correct:float mean_loss:float delta:float delta_ci_low:float "
        "delta_ci_high:float win_rate:float win_rate_ci_low:float win_rate_ci_high:float ties:int "
        "sign_test_p:float warning:str"),
    "gates": (
        "gate:str tier:str question:str verdict:str reasons:str notes:str fix:str values:str "
        "thresholds:str evidence:str underpowered:bool"),
    "trend": (
        "checkpoint:str step:int run:str gate:str task:str metric:str value:float ci_low:float "
        "ci_high:float limit:float judged:bool verdict:str note:str"),
}
SHORT = {"str": pa.large_string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "ids": pa.list_(pa.int64())}


@pytest.mark.parametrize("name", STAGES)
def test_each_stage_declares_the_columns_and_types_of_the_data_contract(name):
    expected = [(column, SHORT[kind]) for column, kind in (item.split(":") for item in CONTRACT[name].split())]
    assert list(STAGES[name].columns.items()) == expected


def test_the_contract_names_every_stage_and_no_other():
    assert set(CONTRACT) == set(STAGES)
