"""A discrete-event simulation of one working day of a predictive campaign.

Like ``pacing_sim.py`` (agents, calls and the pacing policy on an event
heap; an answered call not with an agent within ``connect_deadline`` seconds
is dropped), but what a real day does changes over the day:

* the answer rate follows a profile (points joined by straight lines, a step
  being two points at the same hour);
* the number of agents logged in follows a step profile: agents leaving
  pause at once (those on a call finish it first), agents coming back are
  free at once;
* the talk-time mean follows a step profile;
* several engines may dial the campaign for the same queue of agents, each
  following only the calls it placed itself.

Calls' random draws (answered or not, ring time, talk time) come from one
generator seeded by the scenario seed, in the order the calls are placed, so
every policy faces the same calls: a call placed at hour h is answered when
its draw is below the answer rate at h.

Engines. With ``engines`` > 1, policy "predictive" is the engine's own
coordination: every ``share_interval`` seconds each engine publishes its
ringing calls, its calls waiting and in flight (the engine's live-state row);
the others add them, aged since, to their own when they decide, work out the
count for the campaign as a whole and place their share of it (see
``dialer.pacing.decide``); until an engine's next publication shows the calls
it was expected to place, the others count them as just placed. Policy
"independent" is the same engines each dialing as if alone (what not
coordinating costs). "progressive" and "vicidial" run as one dialer per
campaign (VICIdial keeps one dial level per campaign in its database, shared
by its dialing servers).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

from dialer.pacing import CallStatsEstimator, PacingSettings, PacingStats, decide
from vicidial_adaptive import VicidialAdaptive

# event kinds, ordered so that at one instant agents free up before calls arrive
SHIFT, FREE, TALK_END, ANSWER, NO_ANSWER, DEADLINE, SNAP, TICK = range(8)

HOUR = 3600.0
MINUTE = 60.0


def _profile(points: tuple[tuple[float, float], ...], hour: float) -> float:
    """The value of a piecewise-linear profile at ``hour``."""
    value = points[0][1]
    for (h0, v0), (h1, v1) in zip(points, points[1:]):
        if hour < h0:
            break
        if h1 > h0 and hour < h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
        value = v1
    return value


def _steps(points: tuple[tuple[float, float], ...], hour: float) -> float:
    """The value of a step profile at ``hour`` (the last point at or before it)."""
    value = points[0][1]
    for h, v in points:
        if h <= hour:
            value = v
    return value


@dataclass(frozen=True)
class DayScenario:
    name: str
    hours: float = 10.0
    #: (hour, answer rate) points, joined by straight lines
    answer: tuple[tuple[float, float], ...] = ((0.0, 0.25),)
    #: (hour, agents logged in) steps
    agents: tuple[tuple[float, int], ...] = ((0.0, 20),)
    #: (hour, mean talk time in seconds) steps
    talk: tuple[tuple[float, float], ...] = ((0.0, 90.0),)
    engines: int = 1
    #: (label, hour it starts, hour it ends): the step changes whose recovery is measured
    changes: tuple[tuple[str, float, float], ...] = ()
    #: end the day once this many calls have been answered (a small campaign)
    stop_after_answered: int | None = None
    ring_min: float = 5.0
    ring_max: float = 25.0
    ring_timeout: float = 25.0
    talk_sigma: float = 0.6
    wrapup: float = 10.0
    connect_deadline: float = 2.0
    min_ring: float = 15.0
    share_interval: float = 0.5
    seed: int = 1

    def with_seed(self, seed: int) -> "DayScenario":
        return DayScenario(**{**self.__dict__, "seed": seed})

    @property
    def max_agents(self) -> int:
        return max(a for _, a in self.agents)


def day_scenarios() -> list[DayScenario]:
    """The day suite: one scenario per kind of change, plus small teams and cold starts."""
    return [
        DayScenario("answer rate drift", answer=((0.0, 0.12), (7.0, 0.35), (10.0, 0.20))),
        DayScenario(
            "agents in waves",
            agents=((0.0, 20), (2.0, 10), (2.5, 20), (4.5, 10), (5.0, 20), (6.0, 8), (6.5, 25)),
            changes=(("break 1", 2.0, 2.5), ("break 2", 4.5, 5.0), ("shift change", 6.0, 6.5)),
        ),
        DayScenario(
            "bad-number block",
            answer=((0.0, 0.25), (3.0, 0.25), (3.0, 0.02), (3.0 + 1 / 3, 0.02), (3.0 + 1 / 3, 0.25)),
            changes=(("bad numbers", 3.0, 3.0 + 1 / 3),),
        ),
        DayScenario("talk time 90 -> 240 s", talk=((0.0, 90.0), (5.0, 240.0)),
                    changes=(("talk time", 5.0, 5.0),)),
        DayScenario("3 agents", agents=((0.0, 3),)),
        DayScenario("2 engines", engines=2),
        DayScenario("3 engines", engines=3),
        # A new campaign against timings like `dialer sim`'s (answers within
        # a second or two, short talks), 3 agents, 120 answered calls.
        DayScenario("cold start, 3 agents", hours=2.0, agents=((0.0, 3),), answer=((0.0, 0.6),),
                    ring_min=1.0, ring_max=2.5, ring_timeout=10.0, talk=((0.0, 20.0),), talk_sigma=0.8,
                    wrapup=2.0, stop_after_answered=120),
        DayScenario("cold start, first 15 min", hours=0.25),
    ]


@dataclass
class Engine:
    """One dialing engine's own view: its calls, its estimator, what it knows of the others."""

    index: int
    estimator: CallStatsEstimator
    ringing: dict[int, float] = field(default_factory=dict)   # call -> placed at
    waiting: int = 0
    in_flight: int = 0
    # last publication: (time, placed-at of its ringing calls, waiting, in flight)
    snapshot: tuple[float, tuple[float, ...], int, int] = (0.0, (), 0, 0)
    # per other engine: (decided at, calls it was to place) not yet seen published
    expected: dict[int, list[tuple[float, int]]] = field(default_factory=dict)
    vici: VicidialAdaptive | None = None


class DaySimulation:
    def __init__(self, scenario: DayScenario, policy: str) -> None:
        s = self.s = scenario
        self.policy = policy
        self.rng = random.Random(scenario.seed)
        self.heap: list = []
        self.seq = 0
        self.end = scenario.hours * HOUR
        n = scenario.max_agents
        self.free: deque[int] = deque()
        self.off: set[int] = set(range(n))
        self.paused: set[int] = set()       # busy agents who leave when their call ends
        self.free_since = [0.0] * n
        self.talk_start: dict[int, float] = {}
        self.wrap_start: dict[int, float] = {}
        self.queue: deque[int] = deque()     # answered calls waiting for an agent (all engines)
        self.answered_at: dict[int, float] = {}
        self.call_engine: dict[int, int] = {}
        self.call_talk_z: dict[int, float] = {}
        self.cancelled: set[int] = set()
        self.next_call = 0
        shared = policy == "predictive" and scenario.engines > 1
        many = policy in ("predictive", "independent", "hangup") and scenario.engines > 1
        self.shared = shared or (policy == "hangup" and scenario.engines > 1)
        count = scenario.engines if many else 1
        self.engines = [Engine(i, CallStatsEstimator()) for i in range(count)]
        if policy == "vicidial":
            self.engines[0].vici = VicidialAdaptive(drop_limit=0.03)
        self.hangups = policy == "hangup"
        self.settings = PacingSettings(
            mode="progressive" if policy == "progressive" else "predictive",
            dial_ratio=1.0, max_concurrent=10_000, connect_deadline=scenario.connect_deadline,
            hangup_after=scenario.min_ring if self.hangups else None,
        )
        # figures
        self.placed = self.answered = self.connected = self.dropped = self.hung_up = 0
        self.idle = 0.0
        self.answers: list[tuple[float, bool]] = []      # (answered at, dropped), by call
        self.answer_index: dict[int, int] = {}
        self.recent: deque[tuple[float, int]] = deque()  # (answered at, index into answers) of the last hour
        self.recent_drops = 0
        bins = int(math.ceil(self.end / MINUTE)) + 1
        self.talk_bins = [0.0] * bins
        self.staff_bins = [0.0] * bins
        self.stopped_at: float | None = None

    # -- helpers

    def push(self, t: float, kind: int, item: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, item))

    def hour(self, now: float) -> float:
        return now / HOUR

    def add_talk(self, start: float, end: float) -> None:
        end = min(end, self.end)
        t = start
        while t < end:
            b = int(t // MINUTE)
            stop = min(end, (b + 1) * MINUTE)
            self.talk_bins[b] += stop - t
            t = stop

    def logged_in(self) -> int:
        return self.s.max_agents - len(self.off) - len(self.paused)

    # -- agents

    def on_shift(self, now: float, target: int) -> None:
        have = self.logged_in()
        if target < have:
            leave = have - target
            while leave and self.free:
                self.off.add(self.free.pop())   # the most recently freed leave first
                leave -= 1
            busy = sorted(set(self.wrap_start) - self.paused, key=lambda a: self.wrap_start[a])
            busy += sorted(set(self.talk_start) - self.paused, key=lambda a: self.talk_start[a])
            for agent in busy[:leave]:
                self.paused.add(agent)
        elif target > have:
            come = target - have
            for agent in sorted(self.paused)[:come]:
                self.paused.discard(agent)
                come -= 1
            for agent in sorted(self.off)[:come]:
                self.off.discard(agent)
                self.free_since[agent] = now
                self.agent_free(now, agent)

    def agent_free(self, now: float, agent: int) -> None:
        if self.queue:
            call = self.queue.popleft()
            del self.answered_at[call]
            self.engines[self.call_engine[call]].waiting -= 1
            self.connect(now, call, agent)
        else:
            self.free.append(agent)

    # -- calls

    def place(self, now: float, engine: Engine, count: int) -> None:
        s = self.s
        rng = self.rng
        rate = _profile(s.answer, self.hour(now))
        for _ in range(count):
            call = self.next_call
            self.next_call += 1
            answered = rng.random() < rate
            ring = rng.uniform(s.ring_min, s.ring_max)
            z = rng.gauss(0.0, 1.0)
            engine.ringing[call] = now
            engine.in_flight += 1
            self.call_engine[call] = engine.index
            if answered:
                self.call_talk_z[call] = z
                self.push(now + ring, ANSWER, call)
            else:
                self.push(now + s.ring_timeout, NO_ANSWER, call)
        self.placed += count

    def connect(self, now: float, call: int, agent: int) -> None:
        self.connected += 1
        self.idle += now - self.free_since[agent]
        s = self.s
        mean = _steps(s.talk, self.hour(now))
        mu = math.log(mean) - s.talk_sigma ** 2 / 2.0
        talk = math.exp(mu + s.talk_sigma * self.call_talk_z.pop(call))
        self.talk_start[agent] = now
        self.add_talk(now, now + talk)
        self.push(now + talk, TALK_END, agent * 1_000_000_000 + call)
        e = self.engines[self.call_engine[call]]
        if e.vici is not None:
            e.vici.answered(now, False)

    def on_answer(self, now: float, call: int) -> None:
        if call in self.cancelled:
            self.cancelled.discard(call)
            return
        e = self.engines[self.call_engine[call]]
        placed = e.ringing.pop(call)
        self.answered += 1
        self.answer_index[call] = len(self.answers)
        self.recent.append((now, len(self.answers)))
        self.answers.append((now, False))
        e.estimator.call_answered(now, now - placed)
        if self.free:
            agent = self.free.popleft()
            self.connect(now, call, agent)
        else:
            self.queue.append(call)
            e.waiting += 1
            self.answered_at[call] = now
            self.push(now + self.s.connect_deadline, DEADLINE, call)
        if self.s.stop_after_answered and self.answered >= self.s.stop_after_answered and self.stopped_at is None:
            self.stopped_at = now

    def on_deadline(self, now: float, call: int) -> None:
        if call not in self.answered_at:
            return
        del self.answered_at[call]
        self.queue.remove(call)
        e = self.engines[self.call_engine[call]]
        e.waiting -= 1
        e.in_flight -= 1
        del self.call_talk_z[call]
        self.dropped += 1
        i = self.answer_index.pop(call)
        self.answers[i] = (self.answers[i][0], True)
        if self.answers[i][0] >= now - HOUR:
            self.recent_drops += 1
        if e.vici is not None:
            e.vici.answered(now, True)
        else:
            e.estimator.call_dropped(now)

    def on_no_answer(self, now: float, call: int) -> None:
        if call in self.cancelled:
            self.cancelled.discard(call)
            return
        e = self.engines[self.call_engine[call]]
        placed = e.ringing.pop(call)
        e.in_flight -= 1
        e.estimator.call_not_answered(now, now - placed)

    def on_talk_end(self, now: float, item: int) -> None:
        agent, call = divmod(item, 1_000_000_000)
        start = self.talk_start.pop(agent)
        e = self.engines[self.call_engine[call]]
        e.in_flight -= 1
        self.answer_index.pop(call, None)
        e.estimator.talk_ended(now, now - start)
        self.wrap_start[agent] = now
        self.push(now + self.s.wrapup, FREE, agent)

    def on_free(self, now: float, agent: int) -> None:
        start = self.wrap_start.pop(agent)
        for e in self.engines:
            e.estimator.wrapup_ended(now, now - start)
        if agent in self.paused:
            self.paused.discard(agent)
            self.off.add(agent)
            return
        self.free_since[agent] = now
        self.agent_free(now, agent)

    # -- the policy

    def abandon_hour(self, now: float) -> tuple[int, int]:
        recent = self.recent
        cutoff = now - HOUR
        while recent and recent[0][0] < cutoff:
            _, i = recent.popleft()
            if self.answers[i][1]:
                self.recent_drops -= 1
        return self.recent_drops, len(recent)

    def ask(self, now: float, engine: Engine) -> None:
        if self.stopped_at is not None:
            return
        if engine.vici is not None:
            v = engine.vici
            in_progress = len(engine.ringing) + engine.waiting + len(self.talk_start)
            n = v.calls(self.logged_in(), in_progress, self.dropped, self.answered)
        else:
            stats = self.stats(now, engine)
            decision = decide(stats, self.settings)
            n = decision.calls
            if decision.hangup:
                self.hang_up(now, engine, decision.hangup)
            if self.shared and decision.total_calls:
                k = len(self.engines)
                for other in self.engines:
                    if other is engine:
                        continue
                    share = (decision.total_calls + self.rank(now, other)) // k
                    if share:
                        engine.expected.setdefault(other.index, []).append((now, share))
        if n > 0:
            self.place(now, engine, n)

    def rank(self, now: float, engine: Engine) -> int:
        """An engine's place in the order shares are dealt, turned every second (as the engine does)."""
        return (engine.index - int(now)) % len(self.engines)

    def hang_up(self, now: float, engine: Engine, indices: tuple[int, ...]) -> None:
        calls = list(engine.ringing)
        for i in indices:
            call = calls[i]
            placed = engine.ringing.pop(call)
            engine.in_flight -= 1
            self.call_talk_z.pop(call, None)
            self.cancelled.add(call)
            self.hung_up += 1
            engine.estimator.call_hung_up(now, now - placed)

    def stats(self, now: float, engine: Engine) -> PacingStats:
        d1, a1 = self.abandon_hour(now)
        ringing = tuple([now - t for t in engine.ringing.values()])
        common = dict(
            now=now, agents_logged_in=self.logged_in(), agents_free=len(self.free),
            calls_ringing=len(engine.ringing), calls_waiting=engine.waiting,
            in_flight=max(engine.in_flight, len(engine.ringing) + engine.waiting),
        )
        if self.policy == "progressive":
            return PacingStats(**common)
        shared: dict = {}
        if self.shared:
            ages: list[float] = []
            waiting = in_flight = 0
            for other in self.engines:
                if other is engine:
                    continue
                at, placed, w, f = other.snapshot
                ages += [now - t for t in placed]
                waiting += w
                in_flight += f
                pending = [(t, c) for t, c in engine.expected.get(other.index, []) if t >= at]
                engine.expected[other.index] = pending
                for t, c in pending:
                    ages += [now - t] * c
                    in_flight += c
            shared = dict(shared_ringing_elapsed=tuple(ages), shared_waiting=waiting,
                          shared_in_flight=in_flight, engines=len(self.engines),
                          engine_rank=self.rank(now, engine))
        return PacingStats(
            **common,
            talk_elapsed=tuple([now - t for a, t in self.talk_start.items() if a not in self.paused]),
            wrapup_elapsed=tuple([now - t for a, t in self.wrap_start.items() if a not in self.paused]),
            ringing_elapsed=ringing,
            hangup_candidates=tuple([i for i, age in enumerate(ringing) if age >= self.s.min_ring])
            if self.hangups else (),
            estimates=engine.estimator.estimates(now),
            drops_24h=self.dropped, answered_24h=self.answered,
            drops_30d=self.dropped, answered_30d=self.answered,
            drops_1h=d1, answered_1h=a1,
            **shared,
        )

    # -- running

    def run(self) -> dict:
        s = self.s
        handlers = {
            FREE: self.on_free, TALK_END: self.on_talk_end, ANSWER: self.on_answer,
            NO_ANSWER: self.on_no_answer, DEADLINE: self.on_deadline,
        }
        for h, a in s.agents:
            self.push(h * HOUR, SHIFT, int(a))
        for b in range(len(self.staff_bins)):
            t0, t1 = b * MINUTE, min((b + 1) * MINUTE, self.end)
            if t1 > t0:
                self.staff_bins[b] = _steps(s.agents, t0 / HOUR) * (t1 - t0)
        self.push(0.0, TICK, 0)
        if self.shared:
            self.push(0.0, SNAP, 0)
        heap = self.heap
        end = self.end
        while heap:
            now, kind, _, item = heapq.heappop(heap)
            if now >= end:
                break
            if self.stopped_at is not None and not self.queue and not any(e.ringing for e in self.engines):
                break
            if kind == TICK:
                for e in self.engines:
                    if e.vici is not None:
                        e.vici.sample(now, len(self.free), len(self.queue))
                        e.vici.update(now, self.logged_in(), self.dropped, self.answered)
                self.push(now + 1.0, TICK, 0)
            elif kind == SNAP:
                for e in self.engines:
                    e.snapshot = (now, tuple(e.ringing.values()), e.waiting, e.in_flight)
                self.push(now + s.share_interval, SNAP, 0)
                continue
            elif kind == SHIFT:
                self.on_shift(now, item)
            else:
                handlers[kind](now, item)
            for e in self.engines:
                self.ask(now, e)
        return self.metrics(now if self.stopped_at is not None else end)

    # -- figures

    def occupancy(self, t0: float, t1: float) -> float | None:
        b0, b1 = int(t0 // MINUTE), int(math.ceil(t1 / MINUTE))
        staff = sum(self.staff_bins[b0:b1])
        return sum(self.talk_bins[b0:b1]) / staff if staff else None

    def abandon_between(self, t0: float, t1: float) -> tuple[int, int]:
        drops = answered = 0
        for t, dropped in self.answers:
            if t0 <= t < t1:
                answered += 1
                drops += dropped
        return drops, answered

    def worst_hour(self, until: float) -> float | None:
        """The highest abandon rate of any 60-minute window starting on a whole minute
        with at least 30 answered calls."""
        times = [t for t, _ in self.answers]
        drops = [0]
        for _, d in self.answers:
            drops.append(drops[-1] + d)
        import bisect

        worst = None
        m = 0.0
        while m < max(until - HOUR, 0.0) + 1e-9 or m == 0.0:
            i = bisect.bisect_left(times, m)
            j = bisect.bisect_left(times, m + HOUR)
            if j - i >= 30:
                rate = (drops[j] - drops[i]) / (j - i)
                worst = rate if worst is None else max(worst, rate)
            m += MINUTE
            if m > until:
                break
        return worst

    def metrics(self, until: float) -> dict:
        s = self.s
        until = min(until, self.end)
        staff = sum(self.staff_bins[: int(math.ceil(until / MINUTE))])
        talk = sum(self.talk_bins[: int(math.ceil(until / MINUTE))])
        d15, a15 = self.abandon_between(0.0, 15 * MINUTE)
        out = {
            "scenario": s.name, "policy": self.policy, "seed": s.seed, "hours": round(until / HOUR, 3),
            "occupancy": talk / staff if staff else 0.0,
            "abandon_rate": self.dropped / self.answered if self.answered else 0.0,
            "worst_hour_abandon_rate": self.worst_hour(until),
            "first_15min_abandon_rate": d15 / a15 if a15 else 0.0,
            "calls_cut_share": self.hung_up / self.placed if self.placed else 0.0,
            "agent_wait_s": self.idle / self.connected if self.connected else None,
            "placed": self.placed, "answered": self.answered, "dropped": self.dropped,
            "hung_up": self.hung_up,
        }
        changes = []
        for label, h0, h1 in s.changes:
            t0, t1 = h0 * HOUR, h1 * HOUR
            rates = []
            for start in sorted({t0, t1}):
                d, a = self.abandon_between(start, start + HOUR)
                rates.append(d / a if a else 0.0)
            before = self.occupancy(t0 - 30 * MINUTE, t0)
            recovery = None
            for minutes in range(1, 61):
                e = t1 + minutes * MINUTE
                occ = self.occupancy(max(t1, e - 5 * MINUTE), e)
                if occ is not None and before is not None and occ >= before - 0.05:
                    recovery = minutes * MINUTE
                    break
            changes.append({
                "change": label, "next_hour_abandon_rate": max(rates),
                "occupancy_before": before,
                "occupancy_after": self.occupancy(t1 + 10 * MINUTE, t1 + 20 * MINUTE),
                "recovery_s": recovery,
            })
        out["changes"] = changes
        out["worst_next_hour_abandon_rate"] = max((c["next_hour_abandon_rate"] for c in changes), default=None)
        # not back within the hour: counted as the whole hour
        rec = [HOUR if c["recovery_s"] is None else c["recovery_s"] for c in changes]
        out["slowest_recovery_s"] = max(rec, default=None)
        return out


def simulate_day(scenario: DayScenario, policy: str) -> dict:
    return DaySimulation(scenario, policy).run()
