"""``python -m qagent`` is the ``qagent`` command."""

from qagent.cli import main

main()
