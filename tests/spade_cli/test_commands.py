"""The console commands' one table (spade_cli.commands): what setup.py installs, what the
demo and the tests run."""

import importlib
import importlib.metadata
import runpy

import pytest
from support import ROOT
from support.processes import command_args

from spade_cli import commands


def test_installed_entry_points_are_the_table():
    try:
        distribution = importlib.metadata.distribution("spade-tf")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("spade-tf is not installed (pip install -e .)")
    installed = {entry.name: entry.value for entry in distribution.entry_points
                 if entry.group == "console_scripts"}
    assert installed == commands.COMMANDS, (
        "the installed console scripts differ from spade_cli/commands.py: reinstall "
        "(pip install -e .)")


def test_setup_reads_the_table_without_the_package():
    # As setup.py loads it: by path, with nothing of the package imported.
    table = runpy.run_path(str(ROOT / "spade_cli" / "commands.py"))
    assert table["console_scripts"]() == [f"{name}={target}"
                                          for name, target in commands.COMMANDS.items()]
    setup = (ROOT / "setup.py").read_text()
    assert '"commands.py"' in setup and not any(target in setup
                                                for target in commands.COMMANDS.values())


def test_every_target_is_a_function_and_runs_as_a_module():
    for name, target in commands.COMMANDS.items():
        module_name, _, function = target.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function)), target
        assert commands.command_module(name) == module_name
        assert command_args(name)[1:] == ["-m", module_name]
        # ``python -m`` runs the module: it must call the function as the script does.
        source = (ROOT / (module_name.replace(".", "/") + ".py")).read_text()
        assert f'if __name__ == "__main__":\n    raise SystemExit({function}())' in source
