"""The constructive phase of solver.solve: a valid plan within a second or two, before any search.

Dispatching rules build plans operation by operation, keeping every rule the model keeps: eligible
machines and their durations, machine calendars (an operation fits in one window unless it may
span breaks), sequence-dependent setups on both sides of an operation (it may be inserted into an
earlier gap when both setups fit), qualified operators inside their shifts, releases, `now`,
deadlines, and frozen operations (already on their machines and operators before anything else).

Each rule repeatedly looks at the next operation of every job, finds where it would finish earliest
(machine, operator, start; a *thrifty* rule counts each extra minute a slower machine needs as
finishing later, since near capacity the minutes matter more than the moment), and places one:
- `previous plan` (re-planning, when the input gives a hint): in the order of the previous plan, each
  on the machine it had there while that machine can still take it;
- `earliest end`: the one that finishes first (ties: most work left in its job);
- `most work left` and `least slack`: among those that can start before that earliest end (they
  compete for the same time), the one with the most work left in its job, or the least slack to its
  due date or deadline (the classic active-schedule generation of Giffler and Thompson);
- randomised variants of those while the time budget lasts.
The best plan by the objective is the answer if the search finds nothing better, and the search's
starting point. A plan that would break a deadline is dropped: no plan is better than a wrong one.

The textbook job shop (one machine per operation, nothing else) has its own faster dispatcher:
there, a plan meeting the lower bound is proven optimal without searching at all.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.tools.planning_model import Operation, OpKey, Placement, Problem, objective_terms
from engine.tools.schedule_check import violations
from engine.tools.solver_bounds import Bounds

__all__ = ["Dispatcher", "Rule", "construct"]

_DISPATCH_WORK = 100_000  # plain job shop: above this many operation x job steps, one dispatching rule only
_RANDOM_SPREAD = 0.1  # randomised rules scale each priority by a factor in [1 - spread, 1 + spread]
_THRIFT = 2.5  # a thrifty rule counts each extra minute a slower machine takes as this many minutes later


def construct(
    problem: Problem,
    bounds: Bounds,
    *,
    until: float,
    explore_until: float,
    seed: int = 0,
    on_plan: Callable[[list[Placement], float], None] = lambda plan, objective: None,
) -> list[Placement] | None:
    """The best plan the dispatching rules find, or None when every rule broke a deadline (or a frozen
    operation's place) that only a search can keep. The classic rules run first, each to the end
    unless `until` (a time.monotonic() instant) passes; randomised ones follow until `explore_until`.
    `on_plan` hears of each better plan as it is found."""
    if problem.is_plain():
        plan = _plain_dispatch(problem, bounds.lo)
        on_plan(plan, objective_terms(problem, plan)["objective"])
        return plan
    dispatcher = Dispatcher(problem, bounds)
    best: tuple[float, list[Placement]] | None = None
    rules = [Rule(kind, thrift=thrift) for kind, thrift in _first_rules(problem)]
    if problem.hint:
        rules.insert(0, Rule("previous plan"))
    rng = random.Random(seed)
    while rules or time.monotonic() < explore_until:
        rule = rules.pop(0) if rules else Rule.random(problem, rng)
        plan = dispatcher.run(rule, until if rule.rng is None else min(until, explore_until))
        if plan is None:
            continue
        value = objective_terms(problem, plan)["objective"]
        # the rules keep every constraint by construction; the validator has the last word all the same
        if (best is None or value < best[0]) and not violations(problem, plan, problem.now):
            best = (value, plan)
            on_plan(plan, value)
            if value <= bounds.makespan_lb and set(problem.objective) == {"makespan"}:
                break  # it meets the lower bound: nothing to gain
    return None if best is None else best[1]


def _first_rules(problem: Problem) -> list[tuple[str, float]]:
    """The classic rules (kind, thrift), the likeliest first: slack first when due dates matter."""
    rules = [("most work left", 0.0), ("most work left", _THRIFT), ("least slack", 0.0)]
    rules.append(("earliest end", 0.0))
    if _dated(problem):
        rules.insert(0, rules.pop(2))
    return rules


def _dated(problem: Problem) -> bool:
    """Due dates or deadlines steer the objective (not only the makespan)."""
    dated = any(job.due is not None or job.deadline is not None for job in problem.jobs)
    return dated and set(problem.objective) != {"makespan"}


# --- the general dispatcher --------------------------------------------------------------------


@dataclass
class Rule:
    """A dispatching rule; a randomised one scales each job's priority by its own fixed factor."""

    kind: str
    rng: random.Random | None = None
    thrift: float = 0.0  # minutes of end a machine's extra minutes of work are worth (0: earliest end)
    factors: dict[str, float] = field(default_factory=dict)

    @classmethod
    def random(cls, problem: Problem, rng: random.Random) -> Rule:
        """A randomised variant of the likelier classic rules, with a random thrift."""
        kinds = ("least slack", "most work left") if _dated(problem) else ("most work left", "least slack")
        return cls(rng.choice(kinds), rng, thrift=rng.uniform(0, 2 * _THRIFT))

    def noise(self, job: str) -> float:
        if self.rng is None:
            return 1.0
        if job not in self.factors:
            self.factors[job] = self.rng.uniform(1 - _RANDOM_SPREAD, 1 + _RANDOM_SPREAD)
        return self.factors[job]


@dataclass
class _Timeline:
    """What a machine or an operator is busy with, sorted by start: [start, end) and the setup family."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    families: list[str | None] = field(default_factory=list)

    def add(self, start: int, end: int, family: str | None) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.families.insert(i, family)

    def copy(self) -> _Timeline:
        return _Timeline(list(self.starts), list(self.ends), list(self.families))


@dataclass(frozen=True)
class _Choice:
    start: int
    end: int
    machine: str
    operator: str | None


class Dispatcher:
    """The fixed part of every dispatch: frozen operations in place, each operation's earliest start,
    latest end, and the work left in its job from it on."""

    def __init__(self, problem: Problem, bounds: Bounds) -> None:
        self.problem, self.bounds = problem, bounds
        self.machines = {m: _Timeline() for m in problem.machines}
        self.operators = {o: _Timeline() for o in problem.operators}
        self.frozen: dict[OpKey, Placement] = {}
        # frozen operations given with an operator first; those without get one, fewest candidates first
        for f in sorted(
            problem.frozen.values(), key=lambda f: (f.operator is None, self._candidates(f.key), f.start)
        ):
            operator, skill = f.operator, problem.operations[f.key].skill
            if operator is None and skill is not None:
                operator = self._frozen_operator(skill, f.start, f.end)
            self.frozen[f.key] = Placement(f.key[0], f.key[1], f.machine, operator, f.start, f.end)
            if f.end > f.start:
                self.machines[f.machine].add(f.start, f.end, problem.operations[f.key].family)
                if operator is not None:
                    self.operators[operator].add(f.start, f.end, None)
        self.work_left: dict[OpKey, int] = {}
        for job in problem.jobs:
            rest = 0
            for op in reversed(job.operations):
                rest += op.min_duration
                self.work_left[op.key] = rest
        self.jobs = {job.id: job for job in problem.jobs}
        self.previous = {p.key: p for p in problem.hint}  # a previous plan the "previous plan" rule follows
        # per machine, (family before, family after) -> setup minutes, only the changes that take time
        families = {op.family for op in problem.operations.values() if op.family is not None}
        self.setups: dict[str, dict[tuple[str | None, str | None], int]] = {
            m: {
                (a, b): minutes
                for a in families
                for b in families
                if (minutes := problem.setups.between(m, a, b)) > 0
            }
            for m in problem.machines
        }
        self.qualified = {
            skill: [o.id for o in problem.qualified(skill)]
            for skill in {op.skill for op in problem.operations.values() if op.skill is not None}
        }

    def _candidates(self, key: OpKey) -> int:
        skill = self.problem.operations[key].skill
        return 0 if skill is None else len(self.problem.qualified(skill))

    def _frozen_operator(self, skill: str, start: int, end: int) -> str | None:
        """A qualified operator for a frozen operation given without one: free then (shifts aside, as
        frozen operations are facts); None when nobody is, and the search has to say so."""
        for operator in self.problem.qualified(skill):
            timeline = self.operators[operator.id]
            i = bisect.bisect_right(timeline.starts, start)
            if end > start and i > 0 and timeline.ends[i - 1] > start:
                continue
            if end > start and i < len(timeline.starts) and timeline.starts[i] < end:
                continue
            return operator.id
        return None

    def run(
        self, rule: Rule, stop_at: float | None, kept: Mapping[OpKey, Placement] | None = None
    ) -> list[Placement] | None:
        """One plan by `rule`, or None if it breaks a deadline or `stop_at` passes. `kept`: placements
        that stay as they are (a plan's beginning, when the rest is dispatched again); they must be
        each job's first operations and each machine's and operator's earliest ones."""
        problem, bounds = self.problem, self.bounds
        machines = {m: t.copy() for m, t in self.machines.items()}
        operators = {o: t.copy() for o, t in self.operators.items()}
        placed = dict(self.frozen)
        for key, p in (kept or {}).items():
            if key in placed:
                continue
            placed[key] = p
            if p.end > p.start:
                machines[p.machine].add(p.start, p.end, problem.operations[key].family)
                if p.operator is not None:
                    operators[p.operator].add(p.start, p.end, None)
        position = {job.id: 0 for job in problem.jobs}
        ready: dict[str, int] = {}
        waiting: dict[str, Operation] = {}
        for job in problem.jobs:
            self._advance(job.id, position, ready, waiting, placed)
        choices: dict[str, _Choice | None] = {}
        users: dict[tuple[str, str], set[str]] = {}  # (kind, resource) -> jobs whose choice uses it
        while waiting:
            if stop_at is not None and time.monotonic() > stop_at:
                return None
            for job_id, op in waiting.items():
                if job_id not in choices:
                    new = choices[job_id] = self._best_choice(rule, op, ready[job_id], machines, operators)
                    if new is None:
                        return None  # it fits nowhere before its calendars end
                    users.setdefault(("machine", new.machine), set()).add(job_id)
                    if new.operator is not None:
                        users.setdefault(("operator", new.operator), set()).add(job_id)
            job_id = self._pick(rule, waiting, choices)
            op, choice = waiting[job_id], choices[job_id]
            assert choice is not None
            if choice.end > bounds.latest[op.key]:
                return None  # a deadline or a frozen successor would be missed
            if choice.end > choice.start:
                machines[choice.machine].add(choice.start, choice.end, op.family)
                if choice.operator is not None:
                    operators[choice.operator].add(choice.start, choice.end, None)
            placed[op.key] = Placement(
                op.job, op.id, choice.machine, choice.operator, choice.start, choice.end
            )
            ready[job_id] = choice.end
            self._advance(job_id, position, ready, waiting, placed)
            # a choice on the same machine or operator may no longer fit; the others only got no better
            stale = users.pop(("machine", choice.machine), set()) | {job_id}
            if choice.operator is not None:
                stale |= users.pop(("operator", choice.operator), set())
            for other in stale:
                old = choices.pop(other, None)
                if old is not None:
                    users.get(("machine", old.machine), set()).discard(other)
                    if old.operator is not None:
                        users.get(("operator", old.operator), set()).discard(other)
        return [placed[key] for key in problem.operations]

    def _advance(
        self,
        job_id: str,
        position: dict[str, int],
        ready: dict[str, int],
        waiting: dict[str, Operation],
        placed: dict[OpKey, Placement],
    ) -> None:
        """Move a job to its next operation to place, past those already placed (frozen or kept)."""
        operations = self.jobs[job_id].operations
        waiting.pop(job_id, None)
        while position[job_id] < len(operations):
            op = operations[position[job_id]]
            position[job_id] += 1
            if op.key in placed:
                ready[job_id] = max(ready.get(job_id, placed[op.key].end), placed[op.key].end)
                continue
            ready[job_id] = max(ready.get(job_id, self.bounds.earliest[op.key]), self.bounds.earliest[op.key])
            waiting[job_id] = op
            return

    def _pick(self, rule: Rule, waiting: dict[str, Operation], choices: dict[str, _Choice | None]) -> str:
        if rule.kind == "previous plan":  # the order the previous plan had; new operations when they can
            return min(
                waiting, key=lambda j: (self._previous_start(waiting[j], choices[j]), _end(choices[j]))
            )
        first_end = min(c.end for c in choices.values() if c is not None)
        if rule.kind == "earliest end":
            return min(
                waiting,
                key=lambda j: (_end(choices[j]) * rule.noise(j), -self.work_left[waiting[j].key]),
            )
        # the operations that could start before the earliest end compete for that time
        # (the one that ends first always does, even a milestone that starts as it ends)
        competing = [j for j in waiting if _start(choices[j]) < first_end or _end(choices[j]) == first_end]
        if rule.kind == "most work left":
            return max(
                competing, key=lambda j: (self.work_left[waiting[j].key] * rule.noise(j), -_end(choices[j]))
            )
        return min(
            competing, key=lambda j: (self._slack(waiting[j], choices[j]) * rule.noise(j), _end(choices[j]))
        )

    def _previous_start(self, op: Operation, choice: _Choice | None) -> int:
        previous = self.previous.get(op.key)
        return previous.start if previous is not None else _start(choice)

    def _slack(self, op: Operation, choice: _Choice | None) -> float:
        """Minutes to spare before the job's due date or deadline if it ran on without waiting."""
        job = self.jobs[op.job]
        target = min((t for t in (job.due, job.deadline) if t is not None), default=None)
        if target is None:
            target = self.bounds.horizon
        return target - _start(choice) - self.work_left[op.key]

    def _best_choice(
        self,
        rule: Rule,
        op: Operation,
        ready: int,
        machines: dict[str, _Timeline],
        operators: dict[str, _Timeline],
    ) -> _Choice | None:
        previous = self.previous.get(op.key) if rule.kind == "previous plan" else None
        if previous is not None and previous.machine in op.durations:
            # re-planning: the machine it had keeps it, unless its calendar no longer can
            kept = self._earliest(op, previous.machine, ready, machines[previous.machine], operators)
            if kept is not None:
                return kept
        best: tuple[float, _Choice] | None = None
        for machine, duration in op.durations.items():
            choice = self._earliest(op, machine, ready, machines[machine], operators)
            if choice is None:
                continue
            # a slower machine costs capacity the other operations need: it must finish that much sooner
            score = choice.end + rule.thrift * (duration - op.min_duration)
            if best is None or score < best[0]:
                best = (score, choice)
        return None if best is None else best[1]

    def _earliest(
        self, op: Operation, machine: str, t: int, timeline: _Timeline, operators: dict[str, _Timeline]
    ) -> _Choice | None:
        """The earliest (start, end, operator) of `op` on `machine` at or after t."""
        while True:
            fit = self._machine_fit(op, machine, t, timeline)
            if fit is None:
                return None
            start, end = fit
            if op.skill is None:
                return _Choice(start, end, machine, None)
            operator, later = self._operator_fit(op.skill, start, end, operators)
            if operator is not None:
                return _Choice(start, end, machine, operator)
            if later is None:
                return None
            t = max(later, start + 1)

    def _machine_fit(
        self, op: Operation, machine: str, t: int, timeline: _Timeline
    ) -> tuple[int, int] | None:
        """The earliest slot at or after t inside the machine's calendar that overlaps nothing on the
        machine and leaves the setup from the operation before it and to the operation after it."""
        duration, family = op.durations[machine], op.family
        if duration == 0:
            return self.problem.slot(op, machine, t)  # a milestone takes no machine time
        starts, ends, families = timeline.starts, timeline.ends, timeline.families
        setup = self.setups[machine]  # (family before, family after) -> minutes; absent: none
        n = len(starts)
        i = bisect.bisect_right(starts, t)  # busy stretches [0, i) start by t: they come before it
        while True:
            if i > 0:
                ready = ends[i - 1] + setup.get((families[i - 1], family), 0)
                if ready > t:
                    t = ready
                    if i < n and starts[i] <= t:  # the setup reaches past the next stretch's start
                        i = bisect.bisect_right(starts, t, i)
                        continue
            room_end = starts[i] - setup.get((family, families[i]), 0) if i < n else None
            if room_end is not None and t + duration > room_end:
                t, i = max(t, ends[i]), i + 1  # the gap is too short: try the next one
                continue
            slot = self.problem.slot(op, machine, t)
            if slot is None:
                return None
            if room_end is not None and slot[1] > room_end:
                # the calendar pushed it past this gap: go on from where it would start
                t = max(slot[0], ends[i])
                i = bisect.bisect_right(starts, t, i)
                continue
            return slot

    def _operator_fit(
        self, skill: str, start: int, end: int, operators: dict[str, _Timeline]
    ) -> tuple[str | None, int | None]:
        """A qualified operator free and on shift for [start, end), else the earliest time worth trying
        next (None: no qualified operator ever is)."""
        later: int | None = None
        for name in self.qualified.get(skill, []):
            calendar = self.problem.operators[name].calendar
            candidate: int | None = None
            if calendar is not None and not calendar.contains(start, end):
                window = calendar.window_at(start)
                candidate = calendar.next_open(window[1] if window is not None else start)
            else:
                timeline = operators[name]
                i = bisect.bisect_right(timeline.starts, start)
                if end > start and i > 0 and timeline.ends[i - 1] > start:
                    candidate = timeline.ends[i - 1]
                elif end > start and i < len(timeline.starts) and timeline.starts[i] < end:
                    candidate = timeline.ends[i]
                else:
                    return name, None
            if candidate is not None and (later is None or candidate < later):
                later = candidate
        return None, later


def _start(choice: _Choice | None) -> int:
    assert choice is not None
    return choice.start


def _end(choice: _Choice | None) -> int:
    assert choice is not None
    return choice.end


# --- the textbook job shop -------------------------------------------------------------------


def _plain_dispatch(problem: Problem, lo: int) -> list[Placement]:
    """A feasible plain job-shop plan, the best of three classic dispatching rules (most work
    remaining, most operations remaining, shortest operation): each repeatedly starts, among the
    operations that can start first, the one the rule prefers."""
    rules = (
        lambda duration, work_left, ops_left: (-work_left, -ops_left),
        lambda duration, work_left, ops_left: (-ops_left, -work_left),
        lambda duration, work_left, ops_left: (duration, -work_left),
    )
    if len(problem.operations) * len(problem.jobs) > _DISPATCH_WORK:
        rules = rules[:1]  # each rule costs operations x jobs steps in Python
    plans = [_dispatch(problem, lo, rule) for rule in rules]
    return min(plans, key=lambda plan: max(p.end for p in plan))


def _dispatch(problem: Problem, lo: int, rule: Any) -> list[Placement]:
    routes = [[(*next(iter(op.durations.items())), op) for op in job.operations] for job in problem.jobs]
    ready = [max([lo, *(t for t in (job.release, problem.now) if t is not None)]) for job in problem.jobs]
    work_left = [sum(duration for _, duration, _ in route) for route in routes]
    position = [0] * len(routes)
    machine_free: dict[str, int] = {}
    waiting = list(range(len(routes)))
    plan = []
    while waiting:
        best: tuple[int, Any, int] | None = None
        for j in waiting:
            machine, duration, _ = routes[j][position[j]]
            start = max(ready[j], machine_free.get(machine, lo))
            candidate = (start, rule(duration, work_left[j], len(routes[j]) - position[j]), j)
            if best is None or candidate < best:
                best = candidate
        assert best is not None
        start, _, j = best
        machine, duration, op = routes[j][position[j]]
        plan.append(Placement(op.job, op.id, machine, None, start, start + duration))
        ready[j] = machine_free[machine] = start + duration
        work_left[j] -= duration
        position[j] += 1
        if position[j] == len(routes[j]):
            waiting.remove(j)
    return plan
