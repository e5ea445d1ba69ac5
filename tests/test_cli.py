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
