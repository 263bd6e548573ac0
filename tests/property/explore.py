"""`make explore`: a deep run of the state machine (tests/property/machine.py).

1. Thousands of generated sequences in every configuration (never-versioned, versioned, versioned with the
   records in a state bucket, Suspended with a state bucket, Suspended alone, results delivered by TDMQ
   instead of HTTP callbacks), each step checked against
   the invariants and every sequence settled and checked at quiescence. Violations that an open finding
   explains (tests/model/checks.py FINDINGS) are counted and listed; any other one stops the run, is cut
   down to the fewest steps that still fail, and is printed as a readable scenario (and as steps to paste
   into a regression test).
2. Each known-defect switch (tests/property/defects.py) put back in turn: the machine must find a violation,
   and the shortest failing sequence is printed.
3. Statistics: sequences, steps, faults injected by kind, crashes, stalls, and the states reached.

    python -m tests.property.explore [--examples 2500] [--steps 60] [--seed N] [--only never,Enabled]
                                     [--strict] [--no-defects]

`--strict` tolerates no open finding (the run then stops at the first one it meets).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections import Counter
from typing import Optional

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.model.checks import FINDINGS
from tests.model.cos import ENABLED, NEVER, SUSPENDED

from .defects import DEFECTS
from .machine import REACHED, TOTALS, Config, Step, defect_config, machine_for
from .replay import as_code, last_failure, minimize, replay, report

# Which bucket kind shows each defect (the versions arbitration only exists on versioned buckets).
DEFECT_KINDS = {"no-version-arbitration": ENABLED}


def configurations(tolerate: tuple[str, ...]) -> list[Config]:
    return [Config(NEVER, tolerate=tolerate), Config(ENABLED, tolerate=tolerate),
            Config(ENABLED, state_bucket=True, tolerate=tolerate),
            Config(SUSPENDED, state_bucket=True, tolerate=tolerate), Config(SUSPENDED, tolerate=tolerate),
            Config(NEVER, delivery="tdmq", tolerate=tolerate),
            Config(NEVER, delete_if_match="honour", tolerate=tolerate),
            Config(NEVER, delete_if_match="reject", tolerate=tolerate)]


def run(config: Config, examples: int, steps: int, seed: int) -> Optional[tuple[str, Config, list[Step]]]:
    """Run `examples` sequences; the failing scenario (cut down) with its configuration and steps, or None
    when none failed."""
    machine = machine_for(config)
    machine._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.generate]))
    except AssertionError:
        failed, trace = last_failure()
        steps_left = minimize(failed, trace)
        return report(failed, steps_left, shrink=False) + "\nas steps:\n" + as_code(steps_left), failed, steps_left
    return None


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="make explore", description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=2500, help="sequences per configuration (default 2500)")
    ap.add_argument("--steps", type=int, default=60, help="steps per sequence at most (default 60)")
    ap.add_argument("--seed", type=int, default=None, help="reproduce a run (printed at the start)")
    ap.add_argument("--only", default="", help="bucket kinds to run, comma-separated (never, Enabled, Suspended)")
    ap.add_argument("--strict", action="store_true", help="tolerate no open finding")
    ap.add_argument("--no-defects", action="store_true", help="skip the known-defect switches")
    ap.add_argument("--defect-budget", type=int, default=4000, help="sequences per defect switch at most")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    tolerate = () if args.strict else tuple(FINDINGS)
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    print(f"make explore: seed {seed}; {args.examples} sequences of up to {args.steps} steps per configuration; "
          f"{'strict' if args.strict else f'{len(tolerate)} open finding(s) tolerated'}", flush=True)
    started = time.time()
    failures = 0
    for config in configurations(tolerate):
        if only and config.bucket_kind not in only:
            continue
        t = time.time()
        before = TOTALS["sequences"]
        def counted(kind: str) -> int:
            return sum(n for k, n in TOTALS.items() if k.startswith(f"violations explained by {kind}"))

        findings, limits = counted("open finding"), counted("platform limit")
        failed = run(config, args.examples, args.steps, seed)
        findings, limits = counted("open finding") - findings, counted("platform limit") - limits
        verdict = ("VIOLATION" if failed else "no invariant violated" + (
            f" other than by the open findings ({findings} violation(s) they explain)" if findings else "") + (
            f"; {limits} window(s) of the documented platform limits met" if limits else ""))
        print(f"  {config.describe()}: {TOTALS['sequences'] - before} sequences in {time.time() - t:.0f} s"
              f" — {verdict}", flush=True)
        if failed:
            failures += 1
            print(indent(failed[0]), flush=True)
    exploring = Counter(TOTALS)
    reached = Counter(REACHED)
    if not args.no_defects:
        print("\nknown defects put back one at a time (the machine must find each):", flush=True)
        for name in DEFECTS:
            config = defect_config(name, DEFECT_KINDS.get(name, NEVER), tuple(FINDINGS))
            t = time.time()
            before = TOTALS["sequences"]
            failed = run(config, args.defect_budget, args.steps, seed)
            tried = TOTALS["sequences"] - before
            if failed is None:
                failures += 1
                print(f"  {name}: NOT FOUND in {tried} sequences ({time.time() - t:.0f} s)", flush=True)
            else:
                text, failed_config, steps_left = failed
                own = replay(dataclasses.replace(failed_config, defect=""), steps_left)[0] is None
                if not own:
                    failures += 1
                print(f"  {name}: found after {tried} sequence(s) ({time.time() - t:.0f} s)"
                      + ("" if own else " — BUT THE SEQUENCE FAILS WITHOUT THE SWITCH TOO (a new finding)"), flush=True)
                print(indent(text.split("\nas steps:")[0], 6), flush=True)
    print_statistics(exploring, reached, time.time() - started)
    return 1 if failures else 0


def print_statistics(totals: Counter[str], reached: Counter[str], seconds: float) -> None:
    print(f"\nstatistics of the exploration ({seconds:.0f} s in all):")
    for key in ("sequences", "steps", "steps with nothing to do", "invocations (submit)", "invocations (callback)",
                "invocations (reconcile)", "jobs created", "jobs lost", "faults injected", "crashes", "stalls",
                "dead letters"):
        print(f"  {key:<44} {totals.get(key, 0):>9}")
    for prefix in ("sequences: ", "faults: ", "rule: ", "violations explained by open finding ",
                   "violations explained by platform limit ",
                   "duplicate jobs on Suspended"):
        for key in sorted(k for k in totals if k.startswith(prefix)):
            print(f"  {key:<70} {totals[key]:>9}")
    print(f"states reached ({len(reached)} distinct):")
    for key, n in sorted(reached.items()):
        print(f"  {key:<70} {n:>9}")


def indent(text: str, n: int = 4) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
