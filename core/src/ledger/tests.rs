//! Tests of the ledger: refusals, reservations, commits, records, conservation, time.

use super::*;

fn usage(input: u64, output: u64) -> TokenUsage {
    TokenUsage {
        input,
        output,
        cached_input: 0,
        cache_write_input: 0,
    }
}

#[test]
fn refuses_before_spending_and_names_the_account() {
    let root = Account::root(1, "root", Some(NanoUsd(100)), None);
    let child = root.open_child(2, "child", Some(NanoUsd(80)), None);
    let r = child.reserve(NanoUsd(60), 10).unwrap();
    let err = child.reserve(NanoUsd(30), 10).err().unwrap();
    assert_eq!(&*err.agent, "child");
    assert_eq!(err.kind, LimitKind::Cost);
    // Sibling fits its own limit but not the root's.
    let sib = root.open_child(3, "sib", None, None);
    let err = sib.reserve(NanoUsd(50), 0).err().unwrap();
    assert_eq!(&*err.agent, "root");
    // The refused reservations left nothing behind.
    assert_eq!(root.reserved(), NanoUsd(60));
    r.commit(&usage(5, 5), NanoUsd(40));
    assert_eq!(root.spent(), NanoUsd(40));
    assert_eq!(child.spent(), NanoUsd(40));
    assert_eq!(child.own_spent(), NanoUsd(40));
    assert_eq!(root.own_spent(), NanoUsd(0));
    assert_eq!(root.remaining_cost(), NanoUsd(60));
    assert_eq!(child.remaining_cost(), NanoUsd(40));
    root.check_conservation().unwrap();
}

#[test]
fn token_limit_refusal_rolls_back_cost() {
    let root = Account::root(1, "root", Some(NanoUsd(100)), Some(10));
    let err = root.reserve(NanoUsd(5), 11).err().unwrap();
    assert_eq!(err.kind, LimitKind::Tokens);
    assert_eq!(root.reserved(), NanoUsd(0));
    assert_eq!(root.remaining_cost(), NanoUsd(100));
}

#[test]
fn dropped_reservation_is_released_everywhere() {
    let root = Account::root(1, "root", Some(NanoUsd(100)), None);
    let child = root.open_child(2, "c", None, None);
    {
        let _r = child.reserve(NanoUsd(100), 0).unwrap();
        assert_eq!(root.remaining_cost(), NanoUsd(0));
    }
    assert_eq!(root.remaining_cost(), NanoUsd(100));
    root.check_conservation().unwrap();
}

#[test]
fn overrun_is_booked_and_recorded() {
    let root = Account::root(1, "root", Some(NanoUsd(100)), None);
    let r = root.reserve(NanoUsd(10), 0).unwrap();
    let c = r.commit(&usage(1, 1), NanoUsd(15));
    assert_eq!(c.overrun, NanoUsd(5));
    assert_eq!(root.spent(), NanoUsd(15));
    assert_eq!(root.snapshot().overrun, NanoUsd(5));
    root.check_conservation().unwrap();
}

#[test]
fn finish_is_first_wins() {
    let a = Account::root(1, "a", None, None);
    assert!(a.finish(Outcome::Failed));
    assert!(!a.finish(Outcome::Completed));
    assert_eq!(a.outcome(), Some(Outcome::Failed));
}

#[test]
fn a_refusal_says_what_was_asked_and_what_is_left() {
    let root = Account::root(7, "lead", Some(NanoUsd(1_500_000)), Some(1_000));
    let _held = root.reserve(NanoUsd(1_000_000), 400).expect("fits");
    let cost = root.reserve(NanoUsd(600_000), 0).err().expect("over");
    assert_eq!(
        cost.to_string(),
        "budget of `lead` (task 7) cannot cover the next call: its worst case is $0.000600, $0.000500 is left of $0.001500"
    );
    assert_eq!(
        (cost.limit, cost.used, cost.requested),
        (1_500_000, 1_000_000, 600_000)
    );
    let tokens = root.reserve(NanoUsd(0), 700).err().expect("over");
    assert_eq!(
        tokens.to_string(),
        "token budget of `lead` (task 7) cannot cover the next call: it may use 700 tokens, 600 are left of 1000"
    );
    assert_eq!(root.snapshot().refusals, 2, "each refusal is counted");
}

#[test]
fn carried_spend_is_a_child_of_its_own_capped_at_what_is_left() {
    let root = Account::root(1, "root", Some(NanoUsd(100)), None);
    assert_eq!(root.carry(NanoUsd::ZERO), NanoUsd::ZERO);
    assert!(
        root.snapshot().children.is_empty(),
        "nothing carried, no child"
    );
    assert_eq!(root.carry(NanoUsd(30)), NanoUsd(30));
    assert_eq!(
        root.carry(NanoUsd(500)),
        NanoUsd(70),
        "capped at what is left"
    );
    let snap = root.snapshot();
    assert_eq!((snap.spent, snap.own.cost), (NanoUsd(100), NanoUsd::ZERO));
    let carried: Vec<_> = snap
        .children
        .iter()
        .map(|c| (c.agent.as_str(), c.spent))
        .collect();
    assert_eq!(
        carried,
        [("carried over", NanoUsd(30)), ("carried over", NanoUsd(70))]
    );
    root.check_conservation().expect("conserved");
}

#[test]
fn remaining_tokens_is_the_tightest_headroom_up_the_chain() {
    let root = Account::root(1, "root", None, Some(1_000));
    let child = root.open_child(2, "c", None, Some(300));
    assert_eq!(root.remaining_tokens(), 1_000);
    assert_eq!(child.remaining_tokens(), 300);
    let sibling = root.open_child(3, "s", None, None);
    let held = sibling.reserve(NanoUsd(0), 800).expect("fits");
    assert_eq!(child.remaining_tokens(), 200, "the root has 200 left");
    drop(held);
    assert_eq!(child.remaining_tokens(), 300);
    assert_eq!(
        Account::root(4, "free", None, None).remaining_tokens(),
        u64::MAX
    );
}

#[tokio::test(start_paused = true)]
async fn queued_time_is_until_an_agent_began_the_task() {
    let a = Account::root(1, "a", None, None);
    assert!(!a.was_started());
    tokio::time::advance(Duration::from_millis(50)).await;
    a.mark_started();
    assert!(a.was_started());
    tokio::time::advance(Duration::from_millis(30)).await;
    a.mark_started();
    assert!(a.finish(Outcome::Completed));
    let snap = a.snapshot();
    assert_eq!(
        snap.queued,
        Duration::from_millis(50),
        "the first start counts"
    );
    assert_eq!(snap.own.wall, Duration::from_millis(80));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        a.snapshot().own.wall,
        Duration::from_millis(80),
        "fixed once finished"
    );
    // A task still running: its wall time so far.
    let running = Account::root(3, "r", None, None);
    tokio::time::advance(Duration::from_millis(40)).await;
    assert_eq!(running.snapshot().own.wall, Duration::from_millis(40));
    // Finished the instant it opened: its wall time stays zero.
    let instant = Account::root(4, "i", None, None);
    assert!(instant.finish(Outcome::Completed));
    tokio::time::advance(Duration::from_millis(10)).await;
    assert_eq!(instant.snapshot().own.wall, Duration::ZERO);
    // A task no agent began waited all its life.
    let b = Account::root(2, "b", None, None);
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(b.end(Outcome::Cancelled, "stopped before it began"));
    assert_eq!(b.snapshot().queued, Duration::from_millis(20));
    assert_eq!(b.end_reason(), Some("stopped before it began"));
    assert!(
        !b.end(Outcome::Failed, "too late"),
        "the first outcome stays"
    );
    assert_eq!(b.end_reason(), Some("stopped before it began"));
}

/// Every figure an account records lands in its own field of the snapshot (each recorded
/// a different number of times, so that two swapped or dropped counters show).
#[test]
fn every_record_lands_in_its_own_field() {
    use crate::energy::{Energy, EnergyMethod};
    let a = Account::root(9, "rca", Some(NanoUsd(1_000)), None);
    let times = |n: usize, f: &dyn Fn()| (0..n).for_each(|_| f());
    times(1, &|| a.record_step());
    times(2, &|| a.record_tool_call());
    times(3, &|| a.record_model_error());
    times(4, &|| a.record_private_step());
    times(5, &|| a.record_estimated_call());
    times(6, &|| a.record_restart());
    times(7, &|| a.record_compaction());
    a.record_tool_tokens_saved(11);
    a.record_tool_tokens_saved(2);
    a.record_value(NanoUsd(40));
    a.record_value(NanoUsd(2));
    a.record_cache_saving(-5);
    a.record_cache_saving(12);
    let e = |microjoules, method| Energy {
        microjoules,
        method,
    };
    a.record_energy(EnergyKind::Model, e(100, EnergyMethod::Measured));
    a.record_energy(EnergyKind::Model, e(200, EnergyMethod::Estimated));
    a.record_energy(EnergyKind::Model, e(999, EnergyMethod::Unknown));
    a.record_energy(EnergyKind::Tool, e(30, EnergyMethod::Measured));
    a.record_energy(EnergyKind::Tool, e(40, EnergyMethod::Estimated));
    a.record_energy(EnergyKind::Tool, e(999, EnergyMethod::Unknown));
    let step = |resent, quality, output, free, compaction_saved| StepScore {
        resent,
        quality,
        output,
        free,
        compaction_saved,
    };
    a.record_step_score(&step(10, 80, 5, true, 3));
    a.record_step_score(&step(20, 50, 2, false, 4));
    a.record_event(BudgetEventKind::Refused, "no room");
    a.record_policy(PolicyRecord {
        tool: "restart".into(),
        decision: "denied".into(),
        rule: "freeze".into(),
        reason: "frozen".into(),
    });
    a.set_sole_model("m".into());
    a.set_sole_model("other".into());
    assert!(!a.is_private());
    a.mark_private();
    assert!(a.is_private());
    assert!(
        a.open_child(10, "sub", None, None).is_private(),
        "inherited"
    );
    let s = a.snapshot();
    assert_eq!(
        (
            s.own.steps,
            s.own.tool_calls,
            s.model_errors,
            s.private_steps
        ),
        (1, 2, 3, 4)
    );
    assert_eq!(
        (s.estimated_calls, s.restarts, s.tool_tokens_saved),
        (5, 6, 13)
    );
    let score = a.score();
    assert_eq!(score, s.score);
    assert_eq!(score.compactions, 7);
    assert_eq!((score.value, score.cache_saved), (NanoUsd(42), 7));
    assert_eq!(
        (
            score.model_energy.measured_uj,
            score.model_energy.estimated_uj
        ),
        (100, 200)
    );
    assert_eq!(
        (
            score.tool_energy.measured_uj,
            score.tool_energy.estimated_uj
        ),
        (30, 40)
    );
    assert_eq!(
        score.calls_without_energy, 1,
        "a model call without a figure"
    );
    assert_eq!(score.energy_uj(), 370);
    assert_eq!(
        (score.tokens_resent, score.compaction_tokens_saved),
        (30, 7)
    );
    assert_eq!(
        (score.quality_output, score.free_steps),
        (80 * 5 + 50 * 2, 1)
    );
    assert_eq!(s.events.len(), 1);
    assert_eq!(
        (s.events[0].kind, s.events[0].detail.as_str()),
        (BudgetEventKind::Refused, "no room")
    );
    assert_eq!(s.policy[0].rule, "freeze");
    assert_eq!(s.sole_model.as_deref(), Some("m"), "the first set stays");
    // Absorbing a score adds every field.
    let mut twice = score.clone();
    twice.absorb(&score);
    assert_eq!(twice.value, NanoUsd(84));
    assert_eq!((twice.energy_uj(), twice.calls_without_energy), (740, 2));
    assert_eq!(
        (twice.tokens_resent, twice.quality_output, twice.free_steps),
        (60, 1_000, 2)
    );
    assert_eq!(
        (
            twice.cache_saved,
            twice.compactions,
            twice.compaction_tokens_saved
        ),
        (14, 14, 14)
    );
}

/// Calls are recorded in order; setting the last aside zeroes only its top-rung baseline;
/// a commit's usage and cost land on the account that made the call, its spend up the chain.
#[test]
fn calls_and_commits_land_where_they_belong() {
    let root = Account::root(1, "root", None, None);
    let child = root.open_child(2, "c", Some(NanoUsd(500)), Some(1_000));
    let call = |step, top| CallRecord {
        step,
        model: "m".into(),
        tokens: usage(1, 1),
        cost: NanoUsd(3),
        top_rung_cost: NanoUsd(top),
        energy: crate::energy::Energy::default(),
    };
    root.set_aside_last_call();
    child.record_call(call(1, 9));
    child.record_call(call(2, 8));
    child.set_aside_last_call();
    let tops: Vec<_> = child
        .snapshot()
        .calls
        .iter()
        .map(|c| (c.step, c.top_rung_cost))
        .collect();
    assert_eq!(tops, [(1, NanoUsd(9)), (2, NanoUsd::ZERO)]);
    let r = child.reserve(NanoUsd(200), 300).expect("fits");
    assert_eq!(r.cost(), NanoUsd(200));
    assert_eq!(
        (child.reserved(), root.reserved()),
        (NanoUsd(200), NanoUsd(200))
    );
    let booked = r.commit(
        &TokenUsage {
            input: 7,
            output: 5,
            cached_input: 3,
            cache_write_input: 2,
        },
        NanoUsd(120),
    );
    assert_eq!(
        booked,
        Committed {
            cost: NanoUsd(120),
            overrun: NanoUsd::ZERO
        }
    );
    let c = child.snapshot();
    assert_eq!((c.own.tokens.input, c.own.tokens.output), (7, 5));
    assert_eq!(
        (c.own.tokens.cached_input, c.own.tokens.cache_write_input),
        (3, 2)
    );
    assert_eq!(
        (c.own.model_calls, c.own.cost, c.spent),
        (1, NanoUsd(120), NanoUsd(120))
    );
    assert_eq!(
        c.tokens_spent, 12,
        "input and output: cached input is part of input"
    );
    assert!(c.events.is_empty(), "no overrun, no event");
    assert_eq!((c.reserved, c.limit), (NanoUsd::ZERO, Some(NanoUsd(500))));
    assert_eq!(child.remaining_cost(), NanoUsd(380));
    assert_eq!(child.remaining_tokens(), 988);
    let r = root.snapshot();
    assert_eq!(
        (r.spent, r.own.cost, r.own.model_calls),
        (NanoUsd(120), NanoUsd::ZERO, 0)
    );
    assert_eq!((r.tokens_spent, r.limit), (12, None));
    assert_eq!(
        (root.cost_limit(), child.cost_limit()),
        (None, Some(NanoUsd(500)))
    );
    assert_eq!((child.task(), &**child.agent()), (2, "c"));
    let shown = format!("{child:?}");
    assert!(
        shown.contains("task: 2") && shown.contains("\"c\"") && shown.contains("120"),
        "{shown}"
    );
    root.check_conservation().expect("conserved");
}

/// Conservation is checked, not assumed: a reservation left open and spend booked around
/// the ledger are each reported, naming the account.
#[test]
fn conservation_breaks_are_reported() {
    let root = Account::root(1, "root", None, None);
    let child = root.open_child(2, "c", None, None);
    let held = child.reserve(NanoUsd(5), 0).expect("fits");
    let e = root.check_conservation().expect_err("reserved");
    assert_eq!(e, "account root (task 1): 5 still reserved");
    drop(held);
    root.check_conservation().expect("released");
    child.0.node.cost_spent.fetch_add(3, Ordering::AcqRel);
    let e = root.check_conservation().expect_err("unbooked");
    assert_eq!(e, "account root (task 1): spent 0 != own 0 + children 3");
    root.0.node.cost_spent.fetch_add(3, Ordering::AcqRel);
    root.0.node.cost_used.fetch_add(3, Ordering::AcqRel);
    let e = root.check_conservation().expect_err("child");
    assert_eq!(e, "account c (task 2): spent 3 != own 0 + children 0");
}

/// Crash reasons (the last wins) and cancellation, which reaches the whole subtree and
/// only it.
#[tokio::test]
async fn crashes_and_cancellation() {
    let root = Account::root(1, "root", None, None);
    let a = root.open_child(2, "a", None, None);
    let a1 = a.open_child(3, "a1", None, None);
    let b = root.open_child(4, "b", None, None);
    assert_eq!(a.crash_reason(), None);
    a.record_crash("first");
    a.record_crash("second");
    assert_eq!(a.crash_reason().as_deref(), Some("second"));
    assert!(!a.is_cancelled());
    a.cancel();
    assert!(a.is_cancelled() && a1.is_cancelled());
    assert!(!root.is_cancelled() && !b.is_cancelled());
    a1.cancelled().await;
    root.cancel();
    b.cancelled().await;
    assert!(b.is_cancelled());
}
