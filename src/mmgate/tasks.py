"""The tasks, the ablation conditions and the generation modes, each declared once.

`TASK_TABLE` holds one `Task` per task key and `CONDITION_TABLE` one `Condition` per ablation
condition. Everything else is derived from them: WRITE_TASKS, READ_TASKS, TASKS, TASK_MODALITY,
the conditions each task is scored under, the training log's loss columns and the task-keyed
properties of the config schema (`mmgate.config.load_schema`). The scorer (`mmgate.ablation`), the
gates (P0.4, P1.2), the renderer, the training-log reader, the golden-set validator, the rules and
their wildcard constraints all read these, so a task or condition cannot be added in one place and
missed in another (tests/test_tasks.py fails when a key or name is spelled out elsewhere).

    >>> TASKS, WRITE_TASKS, TASK_MODALITY["i2t"]
    (('t2a', 't2i', 'a2t', 'i2t'), ('t2a', 't2i'), 'image')
    >>> TASK_OF["a2t"].conditions, TASK_OF["a2t"].loss_column
    (('correct', 'shuffled', 'zero', 'noise'), 'a2t_avg')
    >>> [(c.name, c.win_rate_mark) for c in ablations(WRITE)]
    [('shuffled', 'win_rate_shuffled'), ('empty', 'win_rate_empty')]
    >>> [c.name for c in ablations(READ) if READ in c.decides]  # P1.2 reports the shuffled one only
    ['zero', 'noise']
"""

from __future__ import annotations

from dataclasses import dataclass

WRITE, READ = "write", "read"  # a task's side: the model writes its modality (T2A) or reads it (A2T)

# the ablation conditions, as the `condition` column of the ablation tables names them
CORRECT, SHUFFLED, EMPTY, ZERO, NOISE = "correct", "shuffled", "empty", "zero", "noise"


@dataclass(frozen=True)
class Condition:
    """One input a task's golden examples are scored under (teacher-forced, `mmgate.ablation`):
    the correct one, or an ablation whose loss is compared with the correct one's."""

    name: str  # its value in the ablation tables' `condition` column
    sides: tuple[str, ...]  # scored for the write tasks, the read tasks or both
    input: str  # what the model is given as the example's conditioning input
    label: str  # what the report calls it (P0.4's example table: "<label> prompt")
    win_rate_mark: str | None = None  # the Thresholds field its win rate is held to (the report draws it)
    decides: tuple[str, ...] = ()  # the sides whose gate it decides (P0.4 write, P1.2 read); else reported only
    distinct: bool = False  # its input may never be exactly the correct one (ablation's integrity check);
    # zero or noise codes may equal a real input by chance


CONDITION_TABLE = (  # in the order conditions are scored, summarised and judged
    Condition(CORRECT, (WRITE, READ), "the example's own prompt (write) or modality tokens (read)", "own"),
    Condition(SHUFFLED, (WRITE, READ), "another example's prompt (write) or modality tokens (read), never an identical one",
              "shuffled", "win_rate_shuffled", decides=(WRITE,), distinct=True),
    Condition(EMPTY, (WRITE,), "the neutral prompt (config ablation.neutral_prompt)", "empty", "win_rate_empty",
              decides=(WRITE,), distinct=True),
    Condition(ZERO, (READ,), "code 0 of each token's own codebook", "zero", "read_win_rate", decides=(READ,)),
    Condition(NOISE, (READ,), "uniform random codes, each in its token's codebook", "noise", "read_win_rate", decides=(READ,)),
)
CONDITION_OF = {c.name: c for c in CONDITION_TABLE}


def conditions_for(side: str) -> tuple[Condition, ...]:
    """The conditions scored for the tasks of `side`, `correct` first."""
    return tuple(c for c in CONDITION_TABLE if side in c.sides)


def ablations(side: str) -> tuple[Condition, ...]:
    """The ablated conditions of `side`: every one scored for it but `correct`, which each is compared with."""
    return tuple(c for c in conditions_for(side) if c.name != CORRECT)


@dataclass(frozen=True)
class Task:
    """One task: its key, the modality kind it writes or reads, and which of the two it does."""

    key: str  # in paths and wildcards, the golden set's `task` column and the config's task-keyed sections
    modality: str  # the kind of modality tokens: "audio" or "image" (config task_modalities picks which modality)
    side: str  # WRITE: generated, decoded, fingerprinted and prompt-ablated; READ: modality-ablated

    @property
    def writes(self) -> bool:
        return self.side == WRITE

    @property
    def conditions(self) -> tuple[str, ...]:
        """The names of the conditions it is scored under, in the order they are scored and summarised."""
        return tuple(c.name for c in conditions_for(self.side))

    @property
    def loss_column(self) -> str:
        """Its loss in the training log (TD), a key of report.training_log_columns."""
        return f"{self.key}_avg"


TASK_TABLE = (Task("t2a", "audio", WRITE), Task("t2i", "image", WRITE),
              Task("a2t", "audio", READ), Task("i2t", "image", READ))
TASK_OF = {t.key: t for t in TASK_TABLE}

WRITE_TASKS = tuple(t.key for t in TASK_TABLE if t.writes)  # the model writes the modality: generated, decoded, prompt-ablated
READ_TASKS = tuple(t.key for t in TASK_TABLE if not t.writes)  # the model reads the modality: modality-ablated
TASKS = WRITE_TASKS + READ_TASKS
TASK_MODALITY = {t.key: t.modality for t in TASK_TABLE}
TASK_CONDITIONS = {t.key: t.conditions for t in TASK_TABLE}
MODES = ("free", "constrained")  # free: what the model does alone; constrained: with ModalityConstraint
