"""One module per `topograd` command; each has `add_parser(subparsers)` and `run(args) -> int`.

Exit codes: 0 success, 1 the work failed (divergence, a failed gradient check), 2 a usage or
language error. A person's mistake never shows a Python traceback.
"""

COMMANDS = ("run", "check", "graph", "step", "fmt", "eval", "search", "gui", "export", "import")
