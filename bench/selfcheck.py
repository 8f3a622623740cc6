"""The end of a benchmark's `--self-check`, the same for every benchmark: name each breakage it did not catch, print
the JSON last line, and give the exit status (0 only when every breakage was caught)."""

from __future__ import annotations

import json
import sys


def finish(script: str, not_caught: list[str]) -> int:
    for name in not_caught:
        print(f"bench/{script} --self-check: NOT caught: {name}", file=sys.stderr)
    print(json.dumps({"self_check": "failed" if not_caught else "passed", "not_caught": not_caught}))
    return 1 if not_caught else 0
