"""The long fuzzing session: every target (or one) for N minutes in total.

    .venv/bin/python tests/fuzz/run.py --minutes 30 [--target NAME] [--seed N]

Rule 1: prints, per target, executions, coverage edges, queue size and findings; each new
        finding is minimised and saved as tests/fuzz/corpus/<target>/crash-<hash>.
Rule 2: exits 1 when any finding is not a known bug (tests/fuzz/known.py), 2 on bad
        arguments, 0 otherwise; `--strict` counts known bugs as findings too.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import corpus  # noqa: E402
from tests.fuzz.engine import Finding, Result, Session  # noqa: E402
from tests.fuzz.known import known  # noqa: E402
from tests.fuzz.registry import TARGETS, budget  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True, help="total time for all targets")
    parser.add_argument("--target", choices=sorted(TARGETS), help="fuzz only this target")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--strict", action="store_true", help="known bugs count as findings")
    return parser.parse_args(argv)


def announce(finding: Finding) -> None:
    path = corpus.save(finding.target, "crash", finding.data)
    bug = known(finding.target, finding.key)
    label = f"known: {bug.report[:70]}..." if bug else "NEW"
    print(f"  [{finding.target}] {finding.key} ({label})\n    input {finding.data[:120]!r}\n    saved {path}",
          flush=True)
    if bug is None:
        print("    " + finding.report.strip().replace("\n", "\n    "), flush=True)


def fuzz(name: str, seconds: float, seed: int) -> Result:
    target = TARGETS[name]
    inputs = target.seeds() + corpus.load(name)
    print(f"{name}: {seconds:.0f} s, {len(inputs)} seeds", flush=True)
    result = Session(target, inputs, random.Random(seed), on_finding=announce).run(seconds)
    print(f"{name}: {result.executions} executions, {result.edges} edges, queue {result.queue}, "
          f"{len(result.findings)} findings", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    names = [args.target] if args.target else sorted(TARGETS)
    print(f"seed {seed}; targets {', '.join(names)}", flush=True)
    bad = 0
    for name, seconds in budget(args.minutes * 60, names).items():
        result = fuzz(name, seconds, seed)
        bad += sum(1 for f in result.findings.values() if args.strict or known(name, f.key) is None)
    print(f"{'FAIL' if bad else 'ok'}: {bad} findings", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
