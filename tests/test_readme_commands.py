"""Every train.py / adapt.py / benchmarks command the README shows parses as written: its config
files exist and its config (files plus overrides) passes the method's schema. Running them is
left to the commands' own tests; this catches a renamed key or file the README still names."""
from __future__ import annotations

import re
import shlex

import pytest

from framework.config import load_config, parse_args
from framework.methods import schema_for
from tests.commands import ROOT

README = (ROOT / "README.md").read_text()


def commands() -> list[str]:
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"\s*\[[^\]]*\]", "", line)  # optional arguments shown in brackets
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("python ") and part.split()[1].endswith(".py"):
                    found.append(part)
    return found


def test_the_readme_shows_the_main_commands():
    scripts = {shlex.split(c)[1] for c in commands()}
    assert {"train.py", "adapt.py"} <= scripts


@pytest.mark.parametrize("command", commands())
def test_readme_command_parses_as_written(command):
    words = shlex.split(command)
    script = ROOT / words[1]
    assert script.is_file(), f"{words[1]} does not exist"
    if words[1] not in ("train.py", "adapt.py"):
        return
    files, overrides = parse_args(words[2:], "")
    for f in files:
        assert (ROOT / f).is_file(), f"{command}: config file {f} does not exist"
    load_config([str(ROOT / f) for f in files], overrides, schema_for)
