import dataclasses
import math

import pytest

from dialer.pacing import (
    CallEstimates,
    CallStatsEstimator,
    Distribution,
    PacingSettings,
    PacingStats,
    calls_to_place,
    decide,
)

PROGRESSIVE = PacingSettings(mode="progressive")
PREDICTIVE = PacingSettings(mode="predictive")


def stats(**kw):
    kw.setdefault("now", 1000.0)
    kw.setdefault("agents_logged_in", kw.get("agents_free", 0))
    # a campaign with a history, unless a test says otherwise (see the cold-start tests)
    kw.setdefault("answered_30d", 10_000)
    return PacingStats(**kw)


def point(seconds):
    """A distribution with all its mass at exactly ``seconds`` (whole)."""
    return Distribution(cdf=(0.0,) * seconds + (1.0,), mean=float(seconds))


# Every call answered, exactly 10 s after it is placed; every talk lasts 30 s;
# wrap-up 10 s. With nothing random the predictive count is exact.
CERTAIN = CallEstimates(
    answer_rate=1.0,
    answer_delay=point(10),
    no_answer_timeout=25.0,
    talk_time=point(30),
    wrapup_time=10.0,
)


# -- progressive and unattended ------------------------------------------------


def test_progressive_one_call_per_free_agent_minus_calls_already_placed():
    assert calls_to_place(stats(agents_free=3), PROGRESSIVE) == 3
    assert calls_to_place(stats(agents_free=3, calls_ringing=1, in_flight=1), PROGRESSIVE) == 2
    assert calls_to_place(stats(agents_free=3, calls_waiting=1, in_flight=1), PROGRESSIVE) == 2


def test_progressive_ratio_rounds_down():
    ratio = PacingSettings(mode="progressive", dial_ratio=1.5)
    assert calls_to_place(stats(agents_free=3), ratio) == 4
    assert calls_to_place(stats(agents_free=3, calls_ringing=1, calls_waiting=1, in_flight=2), ratio) == 2
    assert calls_to_place(stats(agents_free=1), ratio) == 1


def test_progressive_never_negative():
    assert calls_to_place(stats(agents_free=1, calls_ringing=3, in_flight=3), PROGRESSIVE) == 0
    assert calls_to_place(stats(agents_free=0, agents_logged_in=4), PROGRESSIVE) == 0


def test_progressive_bounded_by_max_concurrent_and_capacity():
    few = PacingSettings(mode="progressive", max_concurrent=100)
    s = stats(agents_free=10, agents_logged_in=40, in_flight=95, talk_elapsed=(60.0,) * 30)
    d = decide(s, few)
    assert d.calls == 5 and "capped" in d.reason
    assert calls_to_place(stats(agents_free=10, capacity=4), few) == 4
    assert calls_to_place(stats(agents_free=10, in_flight=120), few) == 0


def test_unattended_is_bounded_only_by_concurrency():
    s = PacingSettings(mode="unattended", max_concurrent=30)
    assert calls_to_place(stats(agents_free=0, in_flight=12), s) == 18
    assert calls_to_place(stats(agents_free=0, in_flight=12, capacity=5), s) == 5
    assert calls_to_place(stats(agents_free=0, in_flight=31), s) == 0


# -- predictive: exact with certain inputs ----------------------------------------


def test_predictive_with_certain_answers_places_one_call_per_free_agent():
    s = stats(agents_free=3, agents_logged_in=3, estimates=CERTAIN)
    assert calls_to_place(s, PREDICTIVE) == 3


def test_predictive_counts_agents_who_will_be_free_when_the_calls_answer():
    # Calls placed now are answered at +10 s and may wait 2 s: an agent counts
    # when talk end + 10 s wrap-up falls by +12 s.
    s = stats(
        agents_free=1,
        agents_logged_in=4,
        talk_elapsed=(28.0, 10.0),  # ends at +2 (free at +12), ends at +20 (free at +30)
        wrapup_elapsed=(0.0,),  # free at +10
        estimates=CERTAIN,
    )
    d = decide(s, PREDICTIVE)
    assert d.calls == 3  # free now, the one from talk at 28 s, the one in wrap-up
    assert d.reason == "predictive"


def test_predictive_wrapup_longer_than_the_horizon_does_not_count():
    longer = CallEstimates(
        answer_rate=1.0, answer_delay=point(10), talk_time=point(30), wrapup_time=15.0
    )
    s = stats(agents_free=1, agents_logged_in=2, wrapup_elapsed=(0.0,), estimates=longer)
    assert calls_to_place(s, PREDICTIVE) == 1
    s = stats(agents_free=1, agents_logged_in=2, wrapup_elapsed=(3.0,), estimates=longer)
    assert calls_to_place(s, PREDICTIVE) == 2


def test_predictive_subtracts_calls_that_will_be_answered_first():
    base = dict(agents_free=2, agents_logged_in=5, talk_elapsed=(29.0, 29.0, 29.0), estimates=CERTAIN)
    assert calls_to_place(stats(**base), PREDICTIVE) == 5
    # Two calls placed 3 s ago will be answered at +7 s and take two of those agents.
    ringing = stats(**base, calls_ringing=2, ringing_elapsed=(3.0, 3.0), in_flight=5)
    assert calls_to_place(ringing, PREDICTIVE) == 3
    # Without their ages they count as just placed: the same.
    ringing = stats(**base, calls_ringing=2, in_flight=5)
    assert calls_to_place(ringing, PREDICTIVE) == 3
    # A call waiting for an agent takes one at once.
    waiting = stats(**base, calls_waiting=1, in_flight=4)
    assert calls_to_place(waiting, PREDICTIVE) == 4


def test_predictive_ignores_a_call_ringing_past_its_answer_time():
    # Every answered call answers at exactly 10 s; one still ringing at 12 s never will.
    s = stats(agents_free=2, agents_logged_in=2, calls_ringing=1, ringing_elapsed=(12.0,), in_flight=1,
              estimates=CERTAIN)
    assert calls_to_place(s, PREDICTIVE) == 2


def test_predictive_low_answer_rate_dials_several_calls_per_free_agent():
    est = CallEstimates(answer_rate=0.25, answer_delay=point(10), talk_time=point(30), wrapup_time=10.0)
    d = decide(stats(agents_free=4, agents_logged_in=4, estimates=est), PREDICTIVE)
    assert 4 < d.calls <= 16
    assert d.dial_level == d.calls / 4


def test_predictive_is_capped_by_max_dial_level():
    low = CallEstimates(answer_rate=0.05)
    settings = PacingSettings(mode="predictive", max_dial_level=1.5)
    d = decide(stats(agents_free=2, agents_logged_in=2, estimates=low), settings)
    assert d.calls == 3 and "max dial level" in d.reason
    d = decide(stats(agents_free=2, agents_logged_in=2, in_flight=2, calls_ringing=2, estimates=low), settings)
    assert d.calls == 1


def test_predictive_never_slower_than_one_to_one():
    # A forecast that would place nothing (all free agents promised to ringing
    # calls that will be answered) still gets the 1:1 floor.
    s = stats(agents_free=4, agents_logged_in=4, calls_ringing=2, in_flight=2, estimates=CERTAIN)
    assert calls_to_place(s, PREDICTIVE) == 2
    nothing_allowed = PacingSettings(mode="predictive", max_marginal_drop=0.0)
    d = decide(stats(agents_free=3, agents_logged_in=3), nothing_allowed)
    assert d.calls == 3 and "1:1" in d.reason


def test_predictive_no_agents_no_calls():
    assert calls_to_place(stats(agents_free=0, agents_logged_in=0), PREDICTIVE) == 0


# -- predictive: the abandon budget --------------------------------------------------


def busy_floor(**kw):
    """20 agents, 2 free, 18 talking at assorted ages, 6 calls ringing, 25 % answer
    (some 500 answered calls an hour)."""
    kw.setdefault("answered_1h", 500)
    return stats(
        agents_free=2,
        agents_logged_in=20,
        talk_elapsed=tuple(float(5 + 9 * i) for i in range(18)),
        calls_ringing=6,
        ringing_elapsed=(1.0, 2.0, 4.0, 8.0, 12.0, 20.0),
        in_flight=24,
        estimates=CallEstimates(answer_rate=0.25),
        **kw,
    )


def test_over_budget_dials_one_to_one():
    one_to_one = calls_to_place(busy_floor(), PacingSettings(mode="progressive"))
    assert one_to_one == 0
    for kw in (
        dict(drops_24h=4, answered_24h=100),
        dict(drops_30d=31, answered_30d=1000),
        dict(drops_24h=3, answered_24h=100),  # at the target counts as spent
    ):
        d = decide(busy_floor(**kw), PREDICTIVE)
        assert d.calls == one_to_one and d.reason == "over abandon budget: 1:1", kw
    s = stats(agents_free=3, agents_logged_in=3, drops_24h=5, answered_24h=100)
    assert calls_to_place(s, PREDICTIVE) == 3


def test_the_rate_needs_a_minimum_sample():
    # 2 drops of the first 10 answered calls: 2 % of the minimum 100, still dialing predictively.
    d = decide(busy_floor(drops_24h=2, answered_24h=10), PREDICTIVE)
    assert d.abandon_rate == pytest.approx(0.02) and d.reason.startswith("predictive")
    d = decide(busy_floor(drops_24h=3, answered_24h=10), PREDICTIVE)
    assert d.reason == "over abandon budget: 1:1"


def test_dialing_slows_as_the_rate_nears_the_target():
    # The allowed marginal drop is the full 10 % up to half the target less
    # the drops kept in reserve (1.5), then falls linearly to nothing 1.5
    # drops short of the target: of 1000 answered calls, 13 drops leave it
    # whole, 28.5 none.
    counts = []
    for drops, allowed in ((0, 0.10), (10, 0.10), (13, 0.10), (20, 0.10 * 8.5 / 15), (25, 0.10 * 3.5 / 15),
                           (28, 0.10 * 0.5 / 15)):
        d = decide(busy_floor(drops_30d=drops, answered_30d=1000), PREDICTIVE)
        assert d.allowed_drop == pytest.approx(allowed)
        counts.append(d.calls)
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[-1]
    assert counts[0] > 0  # busy agents about to finish justify calls with only 2 free


def test_predictive_dials_more_when_agents_are_about_to_finish():
    # Two agents 2 s into a 10 s wrap-up, ten talking: calls that have lasted a
    # while are likelier to end soon than calls just connected.
    def with_talk(age):
        s = stats(agents_free=0, agents_logged_in=12, talk_elapsed=(age,) * 10, wrapup_elapsed=(2.0, 2.0),
                  estimates=CallEstimates(answer_rate=0.25))
        return calls_to_place(s, PREDICTIVE)

    assert 0 < with_talk(1.0) < with_talk(60.0) <= with_talk(100.0)
    # Nobody free or in wrap-up: a call answered within 10 s could find no agent.
    s = stats(agents_free=0, agents_logged_in=10, talk_elapsed=(150.0,) * 10)
    assert calls_to_place(s, PREDICTIVE) == 0


# -- settings and stats validation ------------------------------------------------------


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(mode="turbo"), "turbo"),
        (dict(dial_ratio=0), "dial_ratio"),
        (dict(max_dial_level=0.5), "max_dial_level"),
        (dict(abandon_target=0), "abandon_target"),
        (dict(max_concurrent=-1), "max_concurrent"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        PacingSettings(**kw)


def test_bad_stats_are_refused():
    with pytest.raises(ValueError, match="agents_free"):
        stats(agents_free=-1, agents_logged_in=0)
    with pytest.raises(ValueError, match="ringing ages"):
        stats(agents_free=1, calls_ringing=1, in_flight=1, ringing_elapsed=(1.0, 2.0))
    with pytest.raises(ValueError, match="in_flight"):
        stats(agents_free=1, calls_ringing=2, calls_waiting=1, in_flight=2)


# -- distributions -------------------------------------------------------------------------


def test_uniform_distribution():
    d = Distribution.uniform(5, 25)
    assert d.at(5) == 0.0 and d.at(15) == 0.5 and d.at(25) == 1.0 and d.at(90) == 1.0
    assert d.at(-3) == 0.0
    assert d.quantile(0.5) == 15.0 and d.mean == 15.0


def test_lognormal_distribution_has_the_requested_mean_and_median():
    d = Distribution.lognormal(90.0, 60.0)
    sigma2 = math.log(1 + (60 / 90) ** 2)
    median = math.exp(math.log(90) - sigma2 / 2)
    assert d.at(median) == pytest.approx(0.5, abs=0.01)
    # mean from the table: sum of P(X > k) over whole seconds
    table_mean = sum(1 - c for c in d.cdf)
    assert table_mean == pytest.approx(90.0, abs=1.0)


def test_empirical_distribution_rounds_samples_to_whole_seconds():
    d = Distribution.from_samples([4.6, 5.2, 9.0, 12.4])
    assert d.at(4) == 0.0
    assert d.at(5) == 0.5
    assert d.at(9) == 0.75
    assert d.at(12) == 1.0
    assert d.mean == pytest.approx((4.6 + 5.2 + 9.0 + 12.4) / 4)


# -- the estimator -----------------------------------------------------------------------------


def test_estimator_answer_rate_blends_the_prior_and_forgets_old_calls():
    est = CallStatsEstimator(window=600.0, prior=CallEstimates(answer_rate=0.25), prior_weight=20)
    assert est.answer_rate(0.0) == 0.25
    for i in range(80):
        if i % 2:
            est.call_answered(float(i), ring_time=10.0)
        else:
            est.call_not_answered(float(i), ring_time=25.0)
    assert est.answer_rate(100.0) == pytest.approx((40 + 20 * 0.25) / (80 + 20))
    # 600 s later the first 30 calls (t = 0..29) have left the window.
    assert est.answer_rate(629.5) == pytest.approx((25 + 5) / (50 + 20))
    assert est.answer_rate(10_000.0) == 0.25


def test_estimator_distributions_replace_the_prior_once_there_are_enough_samples():
    prior = CallEstimates()
    est = CallStatsEstimator(prior=prior, min_samples=30, refresh=30.0)
    for i in range(29):
        est.call_answered(float(i), ring_time=8.0)
        est.talk_ended(float(i), talk_time=math.exp(4.0 if i % 2 else 5.0))
        est.wrapup_ended(float(i), 6.0)
    early = est.estimates(29.0)
    assert early.talk_time is prior.talk_time
    # The time to answer moves from the prior toward the samples as they come.
    assert early.answer_delay.at(7) == pytest.approx(prior.answer_delay.at(7) / 30)
    assert early.answer_delay.at(8) == pytest.approx(29 / 30 + prior.answer_delay.at(8) / 30)
    assert early.wrapup_time == prior.wrapup_time
    est.call_answered(29.0, ring_time=8.0)
    est.talk_ended(29.0, talk_time=math.exp(4.0))
    est.wrapup_ended(29.0, 6.0)
    # Within the refresh interval the cached estimates stay.
    assert est.estimates(40.0) is early
    late = est.estimates(59.0)
    assert late.answer_delay.at(7) == 0.0 and late.answer_delay.at(8) == 1.0
    assert late.wrapup_time == 6.0
    # 15 samples at e^4 and 15 at e^5: log-mean 4.5, log-sd sqrt(0.25 * 30 / 29)
    sigma2 = 0.25 * 30 / 29
    assert late.talk_time.mean == pytest.approx(math.exp(4.5 + sigma2 / 2))
    assert late.answer_rate == pytest.approx((30 + 20 * 0.25) / (30 + 20))
    # Unchanged since: the same object, however late.
    assert est.estimates(80.0) is late


def test_estimator_keeps_the_talk_distribution_while_its_fit_hardly_moves():
    est = CallStatsEstimator(min_samples=30, refresh=30.0, window=10_000.0)
    for i in range(30):
        est.talk_ended(float(i), talk_time=math.exp(4.0 if i % 2 else 5.0))
    first = est.estimates(30.0).talk_time
    # One more sample at the log-mean: mu and sigma move by well under 0.02.
    est.talk_ended(31.0, talk_time=math.exp(4.5))
    assert est.estimates(61.0).talk_time is first
    # Many longer calls: a new distribution with a longer mean.
    for i in range(30):
        est.talk_ended(62.0 + i, talk_time=math.exp(6.0))
    later = est.estimates(100.0).talk_time
    assert later is not first and later.mean > first.mean


def test_estimator_counts_recent_drops():
    est = CallStatsEstimator(window=100.0)
    for t in range(10):
        est.call_answered(float(t), 10.0)
    est.call_dropped(3.0)
    est.call_dropped(50.0)
    assert est.recent_abandon(60.0) == (2, 10)
    assert est.recent_abandon(105.0) == (1, 5)  # answered at 5..9 s remain


# -- predictive with hang-ups ------------------------------------------------------

# Every call answered exactly 20 s after it is placed (so one that has rung
# 16 s is answered 4 s from now); talk 60 s, wrap-up 10 s.
LATE = CallEstimates(
    answer_rate=1.0,
    answer_delay=point(20),
    no_answer_timeout=30.0,
    talk_time=point(60),
    wrapup_time=10.0,
)
HANG_UP = PacingSettings(mode="predictive", hangup_after=15)


def ringing_16s(count, candidates, **kw):
    kw.setdefault("agents_free", 2)
    return stats(
        calls_ringing=count, ringing_elapsed=(16.0,) * count, hangup_candidates=candidates,
        in_flight=count, estimates=LATE, **kw,
    )


def test_hangs_up_the_calls_no_agent_will_be_free_for():
    # Five calls will be answered in 4 s and two agents are free: three would be dropped.
    d = decide(ringing_16s(5, (0, 1, 2, 3, 4)), HANG_UP)
    assert len(d.hangup) == 3 and set(d.hangup) <= {0, 1, 2, 3, 4}
    assert len(set(d.hangup)) == 3
    assert d.calls == 0


def test_hangs_up_only_candidates():
    d = decide(ringing_16s(5, (1, 3)), HANG_UP)
    assert sorted(d.hangup) == [1, 3]


def test_keeps_calls_there_are_agents_for():
    assert decide(ringing_16s(5, (0, 1, 2, 3, 4), agents_free=5), HANG_UP).hangup == ()
    assert decide(ringing_16s(5, (0, 1, 2, 3, 4), agents_free=4), HANG_UP).hangup != ()


def test_no_hang_ups_unless_the_campaign_allows_them():
    assert decide(ringing_16s(5, (0, 1, 2, 3, 4)), PREDICTIVE).hangup == ()


def test_over_the_abandon_budget_calls_that_would_be_dropped_are_still_hung_up():
    over = ringing_16s(5, (0, 1, 2, 3, 4), drops_24h=10, answered_24h=100)
    d = decide(over, HANG_UP)
    assert d.reason == "over abandon budget: 1:1" and d.calls == 0
    assert len(d.hangup) == 3
    # With agents for all of them, none is.
    assert decide(ringing_16s(5, (0, 1, 2, 3, 4), agents_free=5, drops_24h=10, answered_24h=100),
                  HANG_UP).hangup == ()


def test_hang_up_settings_and_candidates_are_checked():
    with pytest.raises(ValueError, match="hangup_after must be at least 15 s"):
        PacingSettings(mode="predictive", hangup_after=10)
    with pytest.raises(ValueError, match="hangup_candidates"):
        stats(agents_free=1, calls_ringing=2, ringing_elapsed=(16.0, 3.0), hangup_candidates=(2,), in_flight=2)
    with pytest.raises(ValueError, match="hangup_candidates"):
        stats(agents_free=1, calls_ringing=2, ringing_elapsed=(16.0, 3.0), hangup_candidates=(0, 0), in_flight=2)


def test_answer_rate_counts_a_hung_up_call_only_for_as_long_as_it_rang():
    est = CallStatsEstimator(prior_weight=0, min_samples=3)
    now = 100.0
    est.call_answered(now, 10.0)
    est.call_answered(now, 10.0)
    for _ in range(4):
        est.call_hung_up(now, 15.0)
    est.call_answered(now, 20.0)
    est.call_not_answered(now, 25.0)
    # At 10 s: 2 of the 8 answered. The 4 hung up at 15 s leave 2 ringing;
    # at 20 s one of those 2 answers (half of the 75 % still ringing), at 25 s
    # the other gives up: 0.25 + 0.75 / 2. Counting hung-up calls as
    # unanswered would say 3 / 8.
    assert est.answer_rate(now) == pytest.approx(0.625)
    delay = est.estimates(now).answer_delay
    assert delay.at(9) == 0.0
    assert delay.at(10) == pytest.approx(0.4) and delay.at(19) == pytest.approx(0.4)
    assert delay.at(20) == pytest.approx(1.0)


def test_answer_rate_without_hang_ups_is_answered_over_placed():
    est = CallStatsEstimator(prior_weight=0, window=50.0)
    est.call_hung_up(0.0, 15.0)
    est.call_answered(100.0, 20.0)
    est.call_not_answered(100.0, 25.0)
    est.call_not_answered(100.0, 3.0)
    # The hang-up has left the window (with it, the rate would be 0.375).
    assert est.answer_rate(100.0) == pytest.approx(1 / 3)
    est.call_hung_up(100.0, 15.0)
    assert est.answer_rate(100.0) == pytest.approx(0.375)


def test_hangs_up_every_candidate_when_no_agent_is_logged_in():
    d = decide(ringing_16s(3, (0, 2), agents_free=0, agents_logged_in=0), HANG_UP)
    assert (d.calls, d.reason, d.hangup) == (0, "no agents", (0, 2))
    assert decide(ringing_16s(3, (0, 2), agents_free=0, agents_logged_in=0), PREDICTIVE).hangup == ()


# -- several engines on one campaign ------------------------------------------------------


def room_to_dial(**kw):
    """20 agents, 8 free, 12 talking, 2 calls ringing, 25 % answer: calls to share."""
    return stats(agents_free=8, agents_logged_in=20, talk_elapsed=tuple(float(5 + 12 * i) for i in range(12)),
                 calls_ringing=2, ringing_elapsed=(3.0, 9.0), in_flight=14,
                 estimates=CallEstimates(answer_rate=0.25), **kw)


@pytest.mark.parametrize("engines", [2, 3, 4])
def test_engines_shares_add_up_to_what_one_engine_would_place(engines):
    alone = decide(room_to_dial(), PREDICTIVE)
    assert alone.calls > engines  # enough to share
    shares = [decide(room_to_dial(engines=engines, engine_rank=r), PREDICTIVE) for r in range(engines)]
    assert sum(d.calls for d in shares) == alone.calls
    assert {d.total_calls for d in shares} == {alone.calls}
    assert max(d.calls for d in shares) - min(d.calls for d in shares) <= 1
    assert shares[0].reason.endswith(f"share 1 of {engines}")


def test_other_engines_ringing_calls_count_as_demand():
    # Another engine's 6 calls ringing at the same ages take the agents this
    # engine would have dialed for: the two together place what one engine
    # with all 12 calls would.
    ages = (1.0, 2.0, 4.0, 8.0, 12.0, 20.0)
    together = decide(busy_floor(answered_30d=1000), PREDICTIVE).calls
    assert together > 0
    mine = stats(agents_free=2, agents_logged_in=20, talk_elapsed=tuple(float(5 + 9 * i) for i in range(18)),
                 calls_ringing=6, ringing_elapsed=ages, in_flight=24, estimates=CallEstimates(answer_rate=0.25))
    one_engine = stats(agents_free=2, agents_logged_in=20, talk_elapsed=mine.talk_elapsed,
                       calls_ringing=12, ringing_elapsed=ages + ages, in_flight=48,
                       estimates=CallEstimates(answer_rate=0.25))
    both = [
        decide(dataclasses.replace(mine, shared_ringing_elapsed=ages, shared_in_flight=24, engines=2,
                                   engine_rank=r), PREDICTIVE)
        for r in (0, 1)
    ]
    assert sum(d.calls for d in both) == decide(one_engine, PREDICTIVE).calls
    assert decide(one_engine, PREDICTIVE).calls < together


def test_a_share_is_capped_by_this_engines_capacity():
    d = decide(room_to_dial(engines=2, engine_rank=1, capacity=1), PREDICTIVE)
    assert d.total_calls > 2 and d.calls == 1 and "capped" in d.reason


def test_bad_engine_rank_is_refused():
    with pytest.raises(ValueError, match="engine_rank"):
        stats(agents_free=1, engines=2, engine_rank=2)


# -- the hourly guard and the cold start -------------------------------------------------


def test_the_last_hours_drops_slow_dialing_before_the_day_rate_moves():
    # 1000 answered this month with 10 drops leaves the day budget whole; the
    # same 10 drops among the last hour's 250 answered calls (4 %) do not.
    calm = decide(busy_floor(drops_30d=10, answered_30d=1000, drops_1h=0, answered_1h=250), PREDICTIVE)
    assert calm.allowed_drop == pytest.approx(0.10)
    # 250 x 4.5 % = 11.25, less 1.5 in reserve: full up to 9.75 - 3.75 = 6 drops,
    # none from 9.75 (the sure floor of the test below is for small teams only).
    for drops, share in ((6, 1.0), (8, 1.75 / 3.75), (9, 0.75 / 3.75), (10, 0.0)):
        d = decide(busy_floor(drops_30d=10, answered_30d=1000, drops_1h=drops, answered_1h=250), PREDICTIVE)
        assert d.allowed_drop == pytest.approx(0.10 * share), drops
        assert d.hour_rate == pytest.approx(drops / 250)
    assert decide(busy_floor(drops_30d=10, answered_30d=1000, drops_1h=10, answered_1h=250),
                  PREDICTIVE).reason == "predictive: 1:1 floor"
    # A small team's hour (3 agents, 60 answered calls): 60 x 4.5 % = 2.7
    # drops, less 2 in reserve, leaves 0.7 of the 0.9 band with none, and one
    # drop spends it, so that two calls dropped at once cannot take the hour
    # over 5 %. Twenty agents keep 1.5 in reserve: 1.2 of the band with none.
    def small(**kw):
        return stats(agents_free=1, agents_logged_in=3, talk_elapsed=(30.0, 60.0), in_flight=2,
                     estimates=CallEstimates(answer_rate=0.25), **kw)
    for drops, allowed in ((0, 0.10 * 0.7 / 0.9), (1, 0.0)):
        d = decide(small(drops_1h=drops, answered_1h=60), PREDICTIVE)
        assert d.allowed_drop == pytest.approx(allowed), drops
    assert decide(busy_floor(drops_1h=0, answered_1h=60), PREDICTIVE).allowed_drop == pytest.approx(0.10)
    assert decide(busy_floor(drops_1h=1, answered_1h=60), PREDICTIVE).allowed_drop == pytest.approx(0.10 * 0.2 / 0.9)



def test_a_spent_budget_still_gives_a_free_agent_a_call_for_the_one_that_will_not_be_answered():
    # A small team (1 agent) whose hour's budget is spent (10 drops of 250
    # answered). The one free agent's call has rung 12 s, past the only answer
    # time there is (10 s) by more than the margin (0.5 s): it will not be
    # answered, so a new call for that agent finds them all but surely and is
    # placed (0.5 % allowed), where the 1:1 floor (counting the ringing call
    # as still to come) would place none.
    late = CallEstimates(answer_rate=0.5, answer_delay=point(10), no_answer_timeout=25.0,
                         talk_time=point(30), wrapup_time=10.0)
    spent_hour = dict(drops_1h=10, answered_1h=250, agents_free=1, agents_logged_in=1,
                      calls_ringing=1, ringing_elapsed=(12.0,), in_flight=1, estimates=late)
    d = decide(stats(**spent_hour), PREDICTIVE)
    assert d.allowed_drop == pytest.approx(0.005)
    assert d.calls == 1 and d.reason.startswith("predictive")
    # Rung 9.9 s: not past the answer time, the agent waits for it.
    assert decide(stats(**{**spent_hour, "ringing_elapsed": (9.9,)}), PREDICTIVE).calls == 0
    assert decide(stats(**{**spent_hour, "ringing_elapsed": (5.0,)}), PREDICTIVE).calls == 0
    # A larger team (6 agents, the other 5 talking) has no floor: one
    # agent's wait is a small share of its time.
    team = {**spent_hour, "agents_logged_in": 6, "talk_elapsed": (0.0,) * 5, "in_flight": 6}
    d = decide(stats(**team), PREDICTIVE)
    assert d.allowed_drop == 0.0 and d.calls == 0 and d.reason == "predictive: 1:1 floor"
    # No marginal drop allowed at all (max_marginal_drop 0): no floor either.
    nothing = PacingSettings(mode="predictive", max_marginal_drop=0.0)
    d = decide(stats(**spent_hour), nothing)
    assert d.allowed_drop == 0.0 and d.calls == 0 and d.reason == "predictive: 1:1 floor"
    # The budget spent (the day's rate at the target): 1:1, no floor.
    d = decide(stats(**spent_hour, drops_24h=3, answered_24h=100), PREDICTIVE)
    assert d.calls == 0 and d.reason == "over abandon budget: 1:1"


def test_a_new_campaign_ramps_up_over_its_first_answered_calls():
    # No history: a tenth of the allowed marginal drop, growing with the
    # answered calls to all of it at 180.
    for answered, share in ((0, 0.1), (40, 0.3), (90, 0.55), (180, 1.0), (500, 1.0)):
        d = decide(busy_floor(answered_30d=answered, answered_24h=answered), PREDICTIVE)
        assert d.allowed_drop == pytest.approx(0.10 * share), answered
    fresh = decide(busy_floor(answered_30d=0), PREDICTIVE).calls
    assert fresh < decide(busy_floor(answered_30d=500, answered_24h=500), PREDICTIVE).calls


def test_a_new_estimator_assumes_answers_likelier_and_sooner():
    est = CallStatsEstimator().estimates(0.0)
    assert est.answer_rate == 0.5 and est.answer_delay.quantile(0.5) < 15


def test_the_estimator_forgets_attempts_from_before_the_answer_rate_shifted():
    # A block of bad numbers (2 % answered) ends and the list answers at 25 %
    # again: within 40 attempts the estimate is back, not dragged down by the
    # 400 from the block for the next half hour.
    est = CallStatsEstimator(prior_weight=0)
    t = 0.0
    for i in range(400):
        t += 1
        (est.call_answered if i % 50 == 0 else est.call_not_answered)(t, 10.0)
    assert est.answer_rate(t) == pytest.approx(0.02) and est.shifts == 0
    for i in range(40):
        t += 1
        (est.call_answered if i % 4 == 0 else est.call_not_answered)(t, 10.0)
    assert est.shifts == 1
    assert est.attempts < 100
    assert est.answer_rate(t) > 0.15


def test_the_estimator_keeps_its_window_while_the_rate_holds():
    import random

    rng = random.Random(7)
    est = CallStatsEstimator()
    for i in range(3000):
        (est.call_answered if rng.random() < 0.25 else est.call_not_answered)(i * 0.5, 10.0)
    assert est.shifts == 0


def test_estimator_snapshot_round_trips_with_ages():
    est = CallStatsEstimator(min_samples=5)
    for i in range(40):
        if i % 2:
            est.call_answered(100.0 + i, ring_time=6.0)
            est.talk_ended(100.0 + i, talk_time=50.0 + i)
            est.wrapup_ended(100.0 + i, 4.0)
        else:
            est.call_not_answered(100.0 + i, ring_time=25.0)
    data = est.snapshot(140.0)
    assert data["attempts"][0] == [40.0, False, 25.0] and len(data["attempts"]) == 40
    back = CallStatsEstimator(min_samples=5)
    assert back.restore(data, 5000.0) == 40
    a, b = est.estimates(140.0), back.estimates(5000.0)
    assert a.answer_rate == b.answer_rate
    assert a.answer_delay == b.answer_delay and a.wrapup_time == b.wrapup_time
    assert a.talk_time.mean == pytest.approx(b.talk_time.mean)
    # The samples kept their ages: they leave the 30-minute window together.
    # the oldest (unanswered) gone: 20 answered of 39, with the prior 0.5 x 20
    assert back.estimates(5000.0 + 1800.0 - 39.5).answer_rate == pytest.approx((20 + 10) / (39 + 20))
    assert back.estimates(5000.0 + 1800.0 + 0.5).answer_rate == 0.5  # all gone: the prior
    assert CallStatsEstimator().restore({"version": 99}, 0.0) == 0
    assert CallStatsEstimator().restore({"version": 1, "attempts": [["x"]]}, 0.0) == 0
