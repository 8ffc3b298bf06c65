"""The console commands: the one table of command name -> ``"module:function"``.

Read by ``setup.py`` (its ``console_scripts``), by ``scripts/demo.py`` and by the tests
(``python -m <module>`` runs a command without its installed script). ``setup.py`` loads
this file by path before the package is installed, so it imports nothing: keep it so.
"""

COMMANDS = {
    "spade-tfrecords": "spade_cli.tfrecords:main",
    "spade-train": "spade_cli.train:main",
    "spade-convert-torch": "spade_cli.convert_torch:main",
    "spade-export": "spade_cli.export:main",
    "spade-eval": "spade_cli.evaluate:main",
    "spade-serve": "spade_cli.serve:main",
    "spade-synthesize": "spade_cli.synthesize:main",
}


def command_module(name: str) -> str:
    """The module behind command ``name`` (``spade-eval`` -> ``spade_cli.evaluate``), which
    ``python -m`` runs as the installed script would."""
    return COMMANDS[name].partition(":")[0]


def console_scripts() -> list[str]:
    """The table as setuptools' ``console_scripts`` entries (``name=module:function``)."""
    return [f"{name}={target}" for name, target in COMMANDS.items()]
