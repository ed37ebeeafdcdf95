"""`python -m provision.bench`: the benchmark from a shell (see provision/bench/runner.py)."""

import sys

from provision.bench.runner import main

sys.exit(main())
