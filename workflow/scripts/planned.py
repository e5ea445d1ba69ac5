"""Placeholder for a stage that a later issue implements: fails with a message, never fakes output."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.errors import MMGateError
from mmgate.scripting import run


def main(smk, log):
    raise MMGateError(
        f"rule {smk.rule} is planned but not implemented yet ({smk.params.stage}). "
        "Run the implemented stages with `snakemake --cores 2 implemented`."
    )


run(snakemake, main)
