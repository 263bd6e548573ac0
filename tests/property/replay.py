"""Replay a recorded sequence of steps, and cut a failing one down to the steps that matter.

Hypothesis shrinks the choices it made; a step that picks "the i-th pending event" changes meaning when
an earlier upload is removed, which stalls that shrinking. `minimize` works on the steps themselves:
it drops runs of steps, then single steps, then single faults of a fault plan, keeping every change
after which the replay still violates an invariant of the same kind, until nothing more can go.
"""

from __future__ import annotations

from typing import Optional

from tests.model.checks import InvariantViolation

from .machine import KEYS, Config, Step, perform, possible


def replay(config: Config, trace: list[Step]) -> tuple[Optional[InvariantViolation], list[str]]:
    """Run `trace` in a fresh world, then settle it; the violation (if any) and the scenario."""
    world = config.world()
    try:
        for action, args in trace:
            if possible(world, action):
                perform(world, action, args)
                world.check_step()
        world.quiesce()
        world.check_quiescent(list(KEYS))
    except InvariantViolation as exc:
        return exc, world.scenario
    finally:
        world.uninstall()
    return None, world.scenario


def _codes(v: Optional[InvariantViolation]) -> set[str]:
    return {x.code for x in v.found} if v is not None else set()


def minimize(config: Config, trace: list[Step], budget: int = 2000) -> list[Step]:
    """The shortest sequence found that still fails with one of the codes `trace` fails with."""
    wanted = _codes(replay(config, trace)[0])
    if not wanted:
        return trace
    runs = 0

    def fails(candidate: list[Step]) -> bool:
        nonlocal runs
        runs += 1
        return bool(_codes(replay(config, candidate)[0]) & wanted)

    current = list(trace)
    changed = True
    while changed and runs < budget:
        changed = False
        size = max(1, len(current) // 2)
        while size >= 1 and runs < budget:
            i = 0
            while i + size <= len(current) and runs < budget:
                candidate = current[:i] + current[i + size:]
                if fails(candidate):
                    current = candidate
                    changed = True
                else:
                    i += size
            size //= 2
        for i in range(len(current)):
            action, args = current[i]
            for j in range(len(args)):
                plan = args[j]
                if not isinstance(plan, dict):
                    continue
                for target in list(plan):
                    fewer = {t: k for t, k in plan.items() if t != target}
                    candidate = current[:i] + [(action, args[:j] + (fewer,) + args[j + 1:])] + current[i + 1:]
                    if runs < budget and fails(candidate):
                        current = candidate
                        changed = True
                        action, args = current[i]
                        plan = fewer
    return current


def report(config: Config, trace: list[Step], shrink: bool = True) -> str:
    """The failing sequence as a readable scenario (cut down first, unless `shrink` is False)."""
    steps = minimize(config, trace) if shrink else trace
    violation, scenario = replay(config, steps)
    head = f"{config.describe()}: {len(steps)} step(s)" + (f" (cut down from {len(trace)})" if shrink else "")
    if violation is None:
        return head + "\n  (the sequence no longer fails when replayed)\n" + "\n".join(f"  {s}" for s in scenario)
    return head + "\n" + str(violation)


def as_code(steps: list[Step]) -> str:
    """The steps as a Python list, to paste into a regression test."""
    return "[\n" + "".join(f"    {step!r},\n" for step in steps) + "]"


def last_failure() -> tuple[Config, list[Step]]:
    from .machine import LAST_FAILURE

    return LAST_FAILURE["config"], LAST_FAILURE["trace"]

