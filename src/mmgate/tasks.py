"""The four tasks and two generation modes, declared once.

Everything that loops over tasks (gates, rules, wildcard constraints, the golden-set validator)
reads these names, so a task cannot be added in one place and missed in another.
"""

from __future__ import annotations

WRITE_TASKS = ("t2a", "t2i")  # the model writes the modality: generated, decoded, prompt-ablated
READ_TASKS = ("a2t", "i2t")  # the model reads the modality: modality-ablated
TASKS = WRITE_TASKS + READ_TASKS
TASK_MODALITY = {"t2a": "audio", "a2t": "audio", "t2i": "image", "i2t": "image"}
MODES = ("free", "constrained")  # free: what the model does alone; constrained: with ModalityConstraint
