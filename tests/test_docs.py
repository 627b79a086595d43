"""The docs show the code the tests run."""

from __future__ import annotations

import re

from conftest import EXAMPLE_PLUGIN, ROOT


def test_plugins_doc_embeds_the_example_plugin_verbatim():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    match = re.search(r"<!-- example: examples/plugins/example_plugin.py -->\n```python\n(.*?)```", doc, re.S)
    assert match, "docs/plugins.md lost its example block"
    assert match.group(1) == EXAMPLE_PLUGIN.read_text()


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_hdqn_doc_embeds_the_goal_space_example_verbatim():
    doc = (ROOT / "docs" / "hdqn.md").read_text()
    match = re.search(r"<!-- example: examples/plugins/taxi_goals.py -->\n```python\n(.*?)```", doc, re.S)
    assert match, "docs/hdqn.md lost its goal space example"
    assert match.group(1) == (ROOT / "examples" / "plugins" / "taxi_goals.py").read_text()
