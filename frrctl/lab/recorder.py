"""ExaBGP API process: append every message ExaBGP hands us to a JSONL file.

Run by ExaBGP (`process recorder { run python -m frrctl.lab.recorder FILE }`).
Each line is flushed at once so that `lab verify` reads a complete record.
"""

from __future__ import annotations

import sys


def main(path: str) -> None:
    with open(path, "a", buffering=1) as out:
        for line in sys.stdin:
            if line.strip():
                out.write(line if line.endswith("\n") else line + "\n")
                out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
