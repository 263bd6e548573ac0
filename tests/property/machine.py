"""The state machine of ciflow, explored: Hypothesis generates sequences of uploads, deletes, COS events,
CI outcomes, callbacks, reconcile runs, clock moves and faults, and runs the real submit, callback and
reconcile code against the in-memory COS and CI (`tests/model/`), checking the invariants after every
step and once everything has settled (quiescence).

Invariants (tests/model/checks.py):
- at most one live CI job per (object version, rule): no two jobs with the same UserData, and no second
  job for the same key, ETag and rule while one is still queued (lost and given-up jobs aside);
- no action on content the verdict was not about: every copy into quarantine and every delete a function
  makes removes suspicious bytes only (checked on every change the functions make);
- at quiescence: every current object whose upload's event was handled has a final status, for its
  current content (the job named in its tags read exactly these bytes, or CI lost every attempt);
  nothing is left PENDING; no pending marker is left; a suspicious object's bytes are not readable at
  its key, including by VersionId.

Every executed step is kept in `trace` as (action, arguments), so a failing sequence can be replayed and
cut down step by step (tests/property/replay.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.model.cos import NEVER
from tests.model.world import FAULT_KINDS, OPERATIONS, RESUME_MODES, World

from .defects import DEFECTS

KEYS = ("uploads/a.png", "uploads/b.png")
# All of one size: CI's measured PicSize cannot tell them apart (an attacker pads as needed).
BODIES = (b"clean-1", b"EVIL--1", b"clean-2", b"BROKEN1")
FORMS = ("documented", "logged")
FUNCTIONS = ("submit", "callback", "reconcile")
DELAYS = (1, 61, 301, 901, 901, 3601)
SKEWS = (-1000, -400, 400, 1000, 0)

# A fault plan: which port call of one invocation fails how: the n-th call it makes (0-based, in order),
# or the n-th call of one operation. No fault at all is what shrinking goes to; otherwise about half of
# the invocations get one or two.
# The operations whose failures matter most come up more often: POST /jobs (throttling is CI's commonest
# answer), record and tag writes, record reads, the move's copy and delete.
LIKELY_OPERATIONS = ("ci.create",) * 4 + ("cos.put_object",) * 4 + ("cos.put_object_tagging", "cos.get_object") * 2
LIKELY_KINDS = ("fail", "fail", "fail", "crash", "crash", "stall", "stall", "fail_after", "fail_after", "replay")
fault_targets = st.one_of(st.tuples(st.sampled_from(LIKELY_OPERATIONS + OPERATIONS), st.sampled_from((0, 0, 0, 1, 2))),
                          st.integers(0, 15))
random_plans = st.lists(st.tuples(st.sampled_from(LIKELY_KINDS), fault_targets), min_size=1, max_size=2).map(
    lambda faults: {target: kind for kind, target in faults})
fault_plans = st.one_of(st.just({}), random_plans)
# Each sequence also has a fault it favours (one kind on the first call of one operation), drawn at its
# start, so that a fault recurs within a sequence often enough to meet the other steps it needs.
focuses = st.tuples(st.sampled_from(LIKELY_KINDS), st.sampled_from(LIKELY_OPERATIONS + OPERATIONS))
initial_skews = st.sampled_from((0, 0, 0, 0, 400, 1000, -400, -1000))
picks = st.integers(0, 7)   # which pending event, job, callback or stalled request (modulo how many exist)

# Every step picks one action; an action listed n times is n times as likely. An action that is not
# possible in the current state (no pending event, job, callback or stalled request) does nothing, so a
# step means the same thing whatever the shrinker removes before it. (One rule with its own choice rather
# than one rule per action: Hypothesis favours rules with fewer arguments, which would let the clock and
# reconcile crowd out the rest.)
ACTIONS = (("upload", 6), ("deliver event", 5), ("CI finishes a job", 4), ("deliver callback", 4),
           ("reconcile", 3), ("time passes", 3), ("stalled request resumes", 3), ("SCF retry", 2),
           ("delete", 1), ("duplicate event", 1), ("drop event", 1), ("CI loses a job", 1),
           ("duplicate callback", 1), ("drop callback", 1), ("forge callback", 1), ("skew a clock", 1))

ARGUMENTS: dict[str, Any] = {
    "upload": st.tuples(st.sampled_from(KEYS), st.sampled_from(BODIES), st.sampled_from(FORMS)),
    "delete": st.tuples(st.sampled_from(KEYS)),
    "deliver event": st.tuples(picks, fault_plans),
    "SCF retry": st.tuples(picks, fault_plans),
    "deliver callback": st.tuples(picks, fault_plans),
    "reconcile": st.tuples(fault_plans),   # (with the sequence's favoured fault as a third choice: `arguments`)
    "forge callback": st.tuples(st.sampled_from(World.FORGERIES), picks),
    "time passes": st.tuples(st.sampled_from(DELAYS)),
    "skew a clock": st.tuples(st.sampled_from(FUNCTIONS), st.sampled_from(SKEWS)),
    "stalled request resumes": st.tuples(picks, st.sampled_from(RESUME_MODES)),
}
for _name in ("duplicate event", "drop event", "CI finishes a job", "CI loses a job", "duplicate callback",
              "drop callback"):
    ARGUMENTS[_name] = st.tuples(picks)

Step = tuple[str, tuple[Any, ...]]


def possible(world: World, action: str) -> bool:
    needs = {"deliver event": world.events, "duplicate event": world.events, "drop event": world.events,
             "SCF retry": world.retries, "CI finishes a job": world.ci.unfinished(),
             "CI loses a job": world.ci.unfinished(), "deliver callback": world.callbacks,
             "duplicate callback": world.callbacks, "drop callback": world.callbacks,
             "forge callback": world.ci.jobs, "stalled request resumes": world.stalled}
    return bool(needs.get(action, True))


def perform(world: World, action: str, args: tuple[Any, ...]) -> None:
    """Take one step in `world` (the caller checked it is `possible`)."""
    run = {
        "upload": lambda key, body, form: world.upload(key, body, form),
        "delete": world.delete,
        "deliver event": world.deliver_event,
        "SCF retry": lambda i, plan: world.deliver_event(i, plan, from_retries=True),
        "duplicate event": world.duplicate_event,
        "drop event": world.drop_event,
        "CI finishes a job": world.ci_finish,
        "CI loses a job": world.ci_lose,
        "deliver callback": world.deliver_callback,
        "duplicate callback": world.duplicate_callback,
        "drop callback": world.drop_callback,
        "forge callback": world.forge_callback,
        "reconcile": world.reconcile,
        "time passes": world.advance,
        "skew a clock": world.set_skew,
        "stalled request resumes": world.resume,
    }[action]
    world.stats[f"rule: {action}"] += 1
    run(*args)


@dataclass(frozen=True)
class Config:
    """One kind of world: the bucket's versioning, where the records live, when CI reads, which open
    findings are tolerated, and which known defect (tests/property/defects.py) is put back, if any."""

    bucket_kind: str = NEVER
    state_bucket: bool = False
    ci_reads: str = "run"
    tolerate: tuple[str, ...] = ()
    defect: str = ""
    delivery: str = "url"           # how CI reports results: url (HTTP callback) or tdmq (a CMQ message)
    delete_if_match: str = "ignore"  # what COS does with S3's If-Match on DELETE: honour | ignore | reject
    # Steering toward a known defect (its switch names the steps and faults its mechanism needs,
    # tests/property/defects.py STEERING): weights of actions in place of those of ACTIONS, and faults
    # (kind, operation) offered as a fault plan beside the random ones. It changes what is generated,
    # never what is checked.
    weights: tuple[tuple[str, int], ...] = ()
    faults: tuple[tuple[str, str], ...] = ()

    def actions(self) -> tuple[str, ...]:
        """The actions a step picks from, each as often as its weight. Steered actions come first, in the
        order given: Hypothesis draws the first (and last) of a list more often than their share."""
        unknown = {name for name, _ in self.weights} - {name for name, _ in ACTIONS}
        if unknown:
            raise ValueError(f"no such action: {sorted(unknown)}")
        steered = dict(self.weights)
        order = list(self.weights) + [(name, weight) for name, weight in ACTIONS if name not in steered]
        return tuple(name for name, weight in order for _ in range(weight))

    def fault_plans(self, focus: tuple[str, str]) -> Any:
        """A sequence's fault plans: none, its favoured fault, a random plan, or one the steering offers."""
        kind, operation = focus
        wrong = [f for f in self.faults if f[0] not in FAULT_KINDS or f[1] not in OPERATIONS]
        if wrong:
            raise ValueError(f"no such fault kind or operation: {wrong}")
        choices = [st.just({}), st.just({(operation, 0): kind}), random_plans]
        if self.faults:
            choices.append(st.sampled_from(self.faults).map(lambda f: {(f[1], 0): f[0]}))
        return st.one_of(*choices)

    def world(self) -> World:
        w = World(self.bucket_kind, ci_reads=self.ci_reads, tolerate=self.tolerate,
                  state_bucket=self.state_bucket, delivery=self.delivery).install()
        w.cos.delete_if_match = self.delete_if_match
        if self.defect:
            DEFECTS[self.defect](w)
        return w

    def describe(self) -> str:
        parts = [f"{self.bucket_kind} bucket" + (" with its records in a state bucket" if self.state_bucket else "")
                 + (", results by TDMQ" if self.delivery == "tdmq" else "")
                 + (f", If-Match on DELETE: {self.delete_if_match}" if self.delete_if_match != "ignore" else "")]
        if self.ci_reads != "run":
            parts.append(f"CI reads at {self.ci_reads}")
        if self.defect:
            parts.append(f"defect put back: {self.defect}")
        if self.weights or self.faults:
            parts.append("steered toward it")
        if self.tolerate:
            parts.append(f"{len(self.tolerate)} open finding(s) tolerated")
        return ", ".join(parts)


def defect_config(name: str, bucket_kind: str, tolerate: tuple[str, ...]) -> Config:
    """The configuration that puts defect `name` back: every open finding in `tolerate` is tolerated except
    those whose mechanism the switch reintroduces."""
    from .defects import OVERLAPS, STEERING

    steer = STEERING.get(name, {})
    return Config(bucket_kind, defect=name, tolerate=tuple(f for f in tolerate if f not in OVERLAPS.get(name, ())),
                  weights=tuple(steer.get("weights", {}).items()), faults=tuple(steer.get("faults", ())))


# Aggregated over every example of a run (`make explore` prints them), and the last failing sequence.
TOTALS: Counter[str] = Counter()
REACHED: Counter[str] = Counter()
LAST_FAILURE: dict[str, Any] = {}


class CiflowMachine(RuleBasedStateMachine):
    config: Config = Config()

    def __init__(self) -> None:
        super().__init__()
        self.world = self.config.world()
        self.weighted = self.config.actions()
        self.trace: list[Step] = []
        self.plans: Any = fault_plans
        self.broken = False
        TOTALS["sequences"] += 1
        TOTALS[f"sequences: {self.config.describe()}"] += 1

    @initialize(focus=focuses, submit=initial_skews, callback=initial_skews, reconcile=initial_skews)
    def start(self, focus: tuple[str, str], submit: int, callback: int, reconcile: int) -> None:
        self.plans = self.config.fault_plans(focus)
        for function, seconds in (("submit", submit), ("callback", callback), ("reconcile", reconcile)):
            if seconds:
                self.trace.append(("skew a clock", (function, seconds)))
                self._guard(lambda f=function, s=seconds: perform(self.world, "skew a clock", (f, s)))

    def arguments(self, action: str) -> Any:
        if action in ("deliver event", "SCF retry", "deliver callback"):
            return st.tuples(picks, self.plans)
        if action == "reconcile":
            return st.tuples(self.plans)
        return ARGUMENTS[action]

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        action = data.draw(st.sampled_from(self.weighted), label="action")
        if not possible(self.world, action):
            TOTALS["steps with nothing to do"] += 1
            return
        args = data.draw(self.arguments(action), label=action)
        self.trace.append((action, args))
        TOTALS["steps"] += 1
        self._guard(lambda: perform(self.world, action, args))

    @invariant()
    def invariants_hold(self) -> None:
        self._guard(self.world.check_step)

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException:
            self.broken = True
            LAST_FAILURE.update(config=self.config, trace=list(self.trace))
            raise

    def teardown(self) -> None:
        try:
            if not self.broken:
                self.world.quiesce()
                self._guard(lambda: self.world.check_quiescent(list(KEYS)))
        finally:
            self.world.uninstall()
            TOTALS.update(self.world.stats)
            REACHED.update(self.world.reached)


def machine_for(config: Config) -> type[CiflowMachine]:
    """A machine class for one configuration (Hypothesis runs a class, not an instance)."""
    name = "Ciflow_" + "".join(c if c.isalnum() else "_" for c in config.describe())
    return type(name, (CiflowMachine,), {"config": config})
