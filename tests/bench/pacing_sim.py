"""A discrete-event simulation of one predictive-dialing shift.

Agents, calls and the dialer's pacing policy, on an event heap. A placed call
is answered with probability ``answer_rate`` after a ring time uniform in
``ring_min``..``ring_max`` seconds, or rings ``ring_timeout`` seconds and is
given up. An answered call takes the agent free longest; with none free it
waits, and if no agent frees within ``connect_deadline`` seconds it is
dropped (abandoned). A connected call lasts a log-normal talk time, then the
agent spends ``wrapup`` seconds in wrap-up before taking the next call.

Calls' outcomes are drawn in the order the calls are placed from a generator
seeded by the scenario seed, so every policy faces the same sequence of
answers, ring times and talk times.

The policy is asked how many calls to place every whole second and after
every event that changes an agent or a call, the way the engine asks it.
Policies: "progressive" and "predictive" (dialer.pacing), "hangup" (predictive
with hang-ups: calls that have rung ``min_ring`` seconds are offered as
candidates and those the policy names are hung up, their outcome unknown to
the estimator beyond how long they rang), "vicidial" (the baseline), and
"oracle": the predictive policy told exactly when every talking agent will be
free, a bound on what better talk-time forecasts could buy ("oracle_hangup":
the same with hang-ups).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

from dialer.pacing import CallStatsEstimator, PacingSettings, PacingStats, decide
from vicidial_adaptive import VicidialAdaptive

# event kinds, ordered so that at one instant agents free up before calls arrive
FREE, TALK_END, ANSWER, NO_ANSWER, DEADLINE, TICK = range(6)


@dataclass(frozen=True)
class Scenario:
    agents: int = 20
    answer_rate: float = 0.25
    hours: float = 8.0
    ring_min: float = 5.0
    ring_max: float = 25.0
    ring_timeout: float = 25.0
    talk_mean: float = 90.0
    talk_sigma: float = 0.6  # of the logarithm: sd about 59 s for a 90 s mean
    wrapup: float = 10.0
    connect_deadline: float = 2.0
    min_ring: float = 15.0
    seed: int = 1


@dataclass
class Result:
    policy: str
    scenario: Scenario
    placed: int = 0
    answered: int = 0
    connected: int = 0
    dropped: int = 0
    talk: float = 0.0
    idle: float = 0.0  # agent time spent free before a connect
    policy_calls: int = 0
    hung_up: int = 0

    def metrics(self) -> dict:
        s = self.scenario
        agent_seconds = s.agents * s.hours * 3600.0
        return {
            "policy": self.policy,
            "agents": s.agents,
            "answer_rate": s.answer_rate,
            "seed": s.seed,
            "occupancy": self.talk / agent_seconds,
            "abandon_rate": self.dropped / self.answered if self.answered else 0.0,
            "calls_per_agent_hour": self.connected / (s.agents * s.hours),
            "agent_wait_s": self.idle / self.connected if self.connected else None,
            "placed": self.placed,
            "answered": self.answered,
            "dropped": self.dropped,
            "hung_up": self.hung_up,
        }


class Simulation:
    def __init__(self, scenario: Scenario, policy: str) -> None:
        self.s = scenario
        self.policy = policy
        self.result = Result(policy=policy, scenario=scenario)
        self.outcomes = random.Random(scenario.seed)
        self.heap: list = []
        self.seq = 0
        n = scenario.agents
        self.free: deque[int] = deque(range(n))  # longest free first
        self.free_since = [0.0] * n
        self.talk_start: dict[int, float] = {}
        self.wrap_start: dict[int, float] = {}
        self.ringing: dict[int, float] = {}  # call -> placed at
        self.waiting: deque[int] = deque()  # answered calls without an agent
        self.answered_at: dict[int, float] = {}
        self.call_talk: dict[int, float] = {}
        self.next_call = 0
        self.end = scenario.hours * 3600.0
        mu = math.log(scenario.talk_mean) - scenario.talk_sigma**2 / 2.0
        self.talk_mu = mu
        if policy == "vicidial":
            self.vici = VicidialAdaptive(drop_limit=0.03)
        self.oracle = policy in ("oracle", "oracle_hangup")
        self.hangups = policy in ("hangup", "oracle_hangup")
        self.talk_end: dict[int, float] = {}
        self.cancelled: set[int] = set()
        if policy != "vicidial":
            self.settings = PacingSettings(
                mode="progressive" if policy == "progressive" else "predictive",
                dial_ratio=1.0, max_concurrent=10_000,
                connect_deadline=scenario.connect_deadline,
                hangup_after=scenario.min_ring if self.hangups else None,
            )
            self.estimator = CallStatsEstimator()

    # -- events

    def push(self, t: float, kind: int, item: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, item))

    def place(self, now: float, count: int) -> None:
        s = self.s
        rng = self.outcomes
        for _ in range(count):
            call = self.next_call
            self.next_call += 1
            answered = rng.random() < s.answer_rate
            ring = rng.uniform(s.ring_min, s.ring_max)
            talk = rng.lognormvariate(self.talk_mu, s.talk_sigma)
            self.ringing[call] = now
            if answered:
                self.call_talk[call] = talk
                self.push(now + ring, ANSWER, call)
            else:
                self.push(now + s.ring_timeout, NO_ANSWER, call)
        self.result.placed += count

    def connect(self, now: float, call: int, agent: int) -> None:
        r = self.result
        r.connected += 1
        r.idle += now - self.free_since[agent]
        talk = self.call_talk.pop(call)
        self.talk_start[agent] = now
        self.talk_end[agent] = now + talk
        r.talk += min(talk, self.end - now)
        self.push(now + talk, TALK_END, agent)

    def on_answer(self, now: float, call: int) -> None:
        if call in self.cancelled:
            self.cancelled.discard(call)
            return
        placed = self.ringing.pop(call)
        self.result.answered += 1
        if self.policy != "vicidial":
            self.estimator.call_answered(now, now - placed)
        if self.free:
            self.connect(now, call, self.free.popleft())
            if self.policy == "vicidial":
                self.vici.answered(now, False)
        else:
            self.waiting.append(call)
            self.answered_at[call] = now
            self.push(now + self.s.connect_deadline, DEADLINE, call)

    def on_deadline(self, now: float, call: int) -> None:
        if call in self.answered_at:  # still waiting: dropped
            del self.answered_at[call]
            self.waiting.remove(call)
            del self.call_talk[call]
            self.result.dropped += 1
            if self.policy == "vicidial":
                self.vici.answered(now, True)
            else:
                self.estimator.call_dropped(now)

    def on_no_answer(self, now: float, call: int) -> None:
        if call in self.cancelled:
            self.cancelled.discard(call)
            return
        placed = self.ringing.pop(call)
        if self.policy != "vicidial":
            self.estimator.call_not_answered(now, now - placed)

    def on_talk_end(self, now: float, agent: int) -> None:
        start = self.talk_start.pop(agent)
        if self.policy != "vicidial":
            self.estimator.talk_ended(now, now - start)
        self.wrap_start[agent] = now
        self.push(now + self.s.wrapup, FREE, agent)

    def on_free(self, now: float, agent: int) -> None:
        start = self.wrap_start.pop(agent)
        if self.policy != "vicidial":
            self.estimator.wrapup_ended(now, now - start)
        self.free_since[agent] = now
        if self.waiting:
            call = self.waiting.popleft()
            del self.answered_at[call]
            self.connect(now, call, agent)
            if self.policy == "vicidial":
                self.vici.answered(now, False)
        else:
            self.free.append(agent)

    # -- the policy

    def ask(self, now: float) -> None:
        r = self.result
        r.policy_calls += 1
        if self.policy == "vicidial":
            v = self.vici
            in_progress = len(self.ringing) + len(self.waiting) + len(self.talk_start)
            n = v.calls(self.s.agents, in_progress, r.dropped, r.answered)
        else:
            decision = decide(self.stats(now), self.settings)
            n = decision.calls
            if decision.hangup:
                self.hang_up(now, decision.hangup)
        if n > 0:
            self.place(now, n)

    def hang_up(self, now: float, indices: tuple[int, ...]) -> None:
        calls = list(self.ringing)
        for i in indices:
            call = calls[i]
            placed = self.ringing.pop(call)
            self.call_talk.pop(call, None)
            self.cancelled.add(call)
            self.result.hung_up += 1
            self.estimator.call_hung_up(now, now - placed)

    def stats(self, now: float) -> PacingStats:
        r = self.result
        if self.policy == "progressive":
            return PacingStats(
                now=now, agents_logged_in=self.s.agents, agents_free=len(self.free),
                calls_ringing=len(self.ringing), calls_waiting=len(self.waiting),
                in_flight=len(self.ringing) + len(self.waiting) + len(self.talk_start),
            )
        talk_elapsed = tuple([now - t for t in self.talk_start.values()])
        ringing = tuple([now - t for t in self.ringing.values()])
        wrapup_elapsed = tuple([now - t for t in self.wrap_start.values()])
        if self.oracle:
            # Told when each talking agent will really be free: reported as in
            # a wrap-up that ends exactly then.
            talk_elapsed = ()
            wrapup_elapsed += tuple([now - self.talk_end[a] for a in self.talk_start])
        return PacingStats(
            now=now,
            agents_logged_in=self.s.agents,
            agents_free=len(self.free),
            talk_elapsed=talk_elapsed,
            wrapup_elapsed=wrapup_elapsed,
            calls_ringing=len(self.ringing),
            ringing_elapsed=ringing,
            hangup_candidates=tuple([i for i, age in enumerate(ringing) if age >= self.s.min_ring])
            if self.hangups else (),
            calls_waiting=len(self.waiting),
            in_flight=len(self.ringing) + len(self.waiting) + len(self.talk_start),
            estimates=self.estimator.estimates(now),
            drops_24h=r.dropped, answered_24h=r.answered,
            drops_30d=r.dropped, answered_30d=r.answered,
        )

    def run(self) -> Result:
        handlers = {
            FREE: self.on_free,
            TALK_END: self.on_talk_end,
            ANSWER: self.on_answer,
            NO_ANSWER: self.on_no_answer,
            DEADLINE: self.on_deadline,
        }
        self.push(0.0, TICK, 0)
        heap = self.heap
        end = self.end
        vici = self.policy == "vicidial"
        while heap:
            now, kind, _, item = heapq.heappop(heap)
            if now >= end:
                break
            if kind == TICK:
                if vici:
                    self.vici.sample(now, len(self.free), len(self.waiting))
                    self.vici.update(now, self.s.agents, self.result.dropped, self.result.answered)
                self.push(now + 1.0, TICK, 0)
            else:
                handlers[kind](now, item)
            # every state change, and the tick, lets the policy place calls
            self.ask(now)
        return self.result


def simulate(scenario: Scenario, policy: str) -> dict:
    return Simulation(scenario, policy).run().metrics()
