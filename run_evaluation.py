#!/usr/bin/env python3
"""The guide's entry point: `python run_evaluation.py --models ... --datasets ... --samples N`.

A thin wrapper over `evalmap run`, which takes the same flags and more (e.g. `--output DIR
--overwrite` to replace an earlier run's results in DIR).
"""

import sys

from evalmap.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "run", *sys.argv[1:]]
    main()
