"""The task and ablation-condition tables of `mmgate.tasks`, and that no other module spells out what
they declare: a task key, a loss column or a condition name written as a string literal elsewhere
would be one more place to miss when a task or condition is added."""

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from mmgate import tasks as T
from mmgate.config import SCHEMA_PATH, load_schema
from mmgate.errors import ConfigError
from mmgate.gates import REGISTRY, Criterion, Thresholds
from mmgate.training import LOG_COLUMNS, READ_LOSSES, WRITE_LOSSES

PACKAGE = Path(T.__file__).resolve().parent

# the names only mmgate.tasks may spell out
DECLARED = ({t.key for t in T.TASK_TABLE} | {t.loss_column for t in T.TASK_TABLE}
            | {c.name for c in T.CONDITION_TABLE} | {c.label for c in T.CONDITION_TABLE})

# Modules that legitimately write task keys: they build data for particular tasks, not loop over them.
ALLOWED_FILES = {
    "tasks.py": "the tables themselves",
    "demo.py": "the demo builder: its synthetic world, default templates and examples are written per task",
    "zoo.py": "the fault zoo: each faulty checkpoint breaks one particular task (e.g. a silent t2a decoder)",
}
# (module, literal) pairs where the word is another thing with the same name; each must still occur.
ALLOWED = {
    ("fingerprint.py", "noise"): "the fingerprint column `noise` (a noise-like output), not the ablation condition",
    ("media.py", "noise"): "the fingerprint column `noise` flagging an output",
    ("stages.py", "noise"): "the fingerprint stage's column `noise` in its parquet schema",
    ("gates.py", "noise"): "P1.3's failure kind `noise` (outputs sound like noise) and its fix",
}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string literal in `path` that is exactly a declared name; docstrings (and so
    their doctests) and comments are prose, not literals, and are left out."""
    tree = ast.parse(path.read_text())
    prose = _docstrings(tree)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DECLARED
                  and id(node) not in prose)


def test_no_module_spells_out_a_task_key_or_a_condition_name():
    found = [f"src/mmgate/{path.name}:{line}: {value!r}" for path in sorted(PACKAGE.glob("*.py"))
             if path.name not in ALLOWED_FILES for line, value in literals(path) if (path.name, value) not in ALLOWED]
    assert not found, ("read these from mmgate.tasks (TASKS, WRITE_TASKS, TASK_OF, CONDITION_TABLE, CORRECT, ...) "
                       "instead of writing them out:\n" + "\n".join(found))


def test_every_allowed_literal_is_still_there():
    stale = [pair for pair in ALLOWED if pair[1] not in {value for _, value in literals(PACKAGE / pair[0])}]
    assert not stale, f"remove these entries from ALLOWED, the literal is gone: {stale}"


def test_the_literal_finder_skips_docstrings_and_finds_code(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Module: >>> run("t2a")"""\n\ndef f():\n    """Also "shuffled"."""\n'
                    '    return {"t2a": 1}, ("correct", f"{1}_avg")  # "empty"\n')
    assert literals(path) == [(5, "correct"), (5, "t2a")]


# --------------------------------------------------------------------------------------- the tables

def test_the_task_names_are_derived_from_the_task_table():
    assert T.TASKS == T.WRITE_TASKS + T.READ_TASKS and len(set(T.TASKS)) == len(T.TASK_TABLE)
    assert set(T.WRITE_TASKS) == {t.key for t in T.TASK_TABLE if t.side == T.WRITE}
    assert set(T.READ_TASKS) == {t.key for t in T.TASK_TABLE if t.side == T.READ}
    assert T.TASK_MODALITY == {t.key: t.modality for t in T.TASK_TABLE} and set(T.TASK_MODALITY.values()) <= {"audio", "image"}
    assert T.TASK_OF == {t.key: t for t in T.TASK_TABLE}


def test_the_tasks_are_the_four_of_the_checklist():
    assert T.TASKS == ("t2a", "t2i", "a2t", "i2t")
    assert T.TASK_CONDITIONS == {"t2a": ("correct", "shuffled", "empty"), "t2i": ("correct", "shuffled", "empty"),
                                 "a2t": ("correct", "shuffled", "zero", "noise"), "i2t": ("correct", "shuffled", "zero", "noise")}


def test_every_task_is_scored_against_its_correct_input_first():
    names = [c.name for c in T.CONDITION_TABLE]
    assert len(set(names)) == len(names) and names[0] == T.CORRECT
    for task in T.TASK_TABLE:
        assert task.conditions[0] == T.CORRECT and len(task.conditions) > 1
        assert [c.name for c in T.ablations(task.side)] == list(task.conditions[1:])


def test_every_ablation_has_a_pass_mark_and_decides_only_a_side_it_is_scored_for():
    fields = {f.name for f in dataclasses.fields(Thresholds)}
    assert T.CONDITION_OF[T.CORRECT].win_rate_mark is None and not T.CONDITION_OF[T.CORRECT].decides
    for side in (T.WRITE, T.READ):
        assert any(side in c.decides for c in T.ablations(side)), f"no condition decides the {side} tasks' gate"
        for c in T.ablations(side):
            assert c.win_rate_mark in fields and set(c.decides) <= set(c.sides)


@pytest.mark.parametrize("side, tasks", [(T.WRITE, T.WRITE_TASKS), (T.READ, T.READ_TASKS)])
def test_the_gate_of_each_side_states_the_win_rate_of_every_condition_it_judges(side, tasks):
    """P0.4 (write) and P1.2 (read) judge win_rate_<condition> against the table's pass mark."""
    (spec,) = [s for s in REGISTRY if "ablate" in s.tables and tuple(s.tasks) == tasks]
    for c in T.ablations(side):
        assert (Criterion(f"win_rate_{c.name}", ">=", c.win_rate_mark) in spec.criteria) == (side in c.decides)


def test_the_training_losses_are_the_tasks_loss_columns():
    assert WRITE_LOSSES == tuple(T.TASK_OF[t].loss_column for t in T.WRITE_TASKS)
    assert READ_LOSSES == tuple(T.TASK_OF[t].loss_column for t in T.READ_TASKS)
    assert set(WRITE_LOSSES + READ_LOSSES) < set(LOG_COLUMNS)


def test_every_task_has_a_colour_and_a_marker_of_its_own():
    from mmgate import render as R

    assert len({R.TASK_COLORS[t] for t in T.TASKS}) == len({R.TASK_MARKERS[t] for t in T.TASKS}) == len(T.TASKS)


# --------------------------------------------------------------------------------------- the schema

def test_the_schema_yaml_lists_no_task_and_load_schema_fills_them_in():
    raw = yaml.safe_load(SCHEMA_PATH.read_text())
    schema = load_schema()
    for section in ("templates", "task_modalities"):
        assert "properties" not in raw["properties"][section]
        assert list(schema["properties"][section]["properties"]) == list(T.TASKS)
        assert "x-per-task" not in schema["properties"][section]
    columns = schema["properties"]["report"]["properties"]["training_log_columns"]["properties"]
    assert set(columns) == set(LOG_COLUMNS)
    assert not set(raw["properties"]["report"]["properties"]["training_log_columns"]["properties"]) & DECLARED


def test_the_per_task_length_limits_are_write_tasks():
    """report.length_limits keeps its default values in the YAML: they are values, not the task list."""
    assert set(load_schema()["properties"]["report"]["properties"]["length_limits"]["default"]) <= set(T.WRITE_TASKS)


def test_a_task_added_to_the_table_is_a_key_of_the_schema(monkeypatch):
    from mmgate import config

    monkeypatch.setattr(config, "TASK_TABLE", T.TASK_TABLE + (T.Task("t2v", "video", T.WRITE),))
    schema = load_schema()
    assert "t2v" in schema["properties"]["templates"]["properties"]
    assert "t2v" in schema["properties"]["task_modalities"]["properties"]
    assert "t2v_avg" in schema["properties"]["report"]["properties"]["training_log_columns"]["properties"]


def test_a_key_both_listed_and_per_task_is_an_error(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text("type: object\nproperties:\n  templates:\n    type: object\n"
                    "    properties: {t2a: {type: string}}\n    x-per-task: {field: key, schema: {type: string}}\n")
    with pytest.raises(ConfigError, match="'t2a' is listed and also given by x-per-task"):
        load_schema(path)
