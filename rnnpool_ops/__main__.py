"""`python -m rnnpool_ops`: the demonstration run (see rnnpool_ops.demo.cli)."""

from .demo.cli import main

main()
