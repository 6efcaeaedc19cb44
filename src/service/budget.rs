//! The topology's own budget (`budget:`) as ledger accounts, for every served task: the total,
//! the day's inside it and the hour's inside that.

use std::time::Duration;

use baton::core::{Account, NanoUsd, TaskId};
use baton::topologies::TopologyBudget;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The topology's budget, as accounts: every served task's account is opened under the current
/// hour, inside the current day, inside the total, so the ledger enforces all three at once.
pub(crate) struct Periods {
    pub(crate) limits: TopologyBudget,
    pub(crate) total: Account,
    pub(crate) day: Account,
    pub(crate) day_start: Instant,
    pub(crate) hour: Account,
    pub(crate) hour_start: Instant,
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

impl Periods {
    pub(crate) fn new(limits: TopologyBudget) -> Periods {
        let total = Account::root(TaskId::fresh().0, "served", limits.max, None);
        let day = total.open_child(TaskId::fresh().0, "served: day", limits.per_day, None);
        let hour = day.open_child(TaskId::fresh().0, "served: hour", limits.per_hour, None);
        let now = Instant::now();
        Periods {
            limits,
            total,
            day,
            day_start: now,
            hour,
            hour_start: now,
        }
    }

    /// The account a task starting now is opened under (a new day or hour begins when due).
    pub(crate) fn current(&mut self) -> &Account {
        let now = Instant::now();
        if now.duration_since(self.day_start) >= DAY {
            while now.duration_since(self.day_start) >= DAY {
                self.day_start += DAY;
            }
            self.day =
                self.total
                    .open_child(TaskId::fresh().0, "served: day", self.limits.per_day, None);
            self.hour_start = self.day_start;
            self.hour = self.new_hour();
        }
        if now.duration_since(self.hour_start) >= HOUR {
            while now.duration_since(self.hour_start) >= HOUR {
                self.hour_start += HOUR;
            }
            self.hour = self.new_hour();
        }
        &self.hour
    }

    fn new_hour(&self) -> Account {
        self.day.open_child(
            TaskId::fresh().0,
            "served: hour",
            self.limits.per_hour,
            None,
        )
    }

    /// Books `amount` (an earlier run of the service's spend) against the total only.
    pub(crate) fn carry_total(&mut self, amount: u64) {
        self.total.carry(NanoUsd(amount));
    }

    /// Charges `amount` (an interrupted task's worst case) to the current periods: it was spent
    /// recently, so the day's and the hour's limits count it too (the safe side).
    pub(crate) fn charge(&mut self, amount: u64) {
        self.current().carry(NanoUsd(amount));
    }

    pub(crate) fn view(&self) -> BudgetView {
        let limit = |l: Option<NanoUsd>| l.map(|l| l.0);
        BudgetView {
            spent_nanousd: self.total.spent().0,
            max_nanousd: limit(self.limits.max),
            day_spent_nanousd: self.day.spent().0,
            max_per_day_nanousd: limit(self.limits.per_day),
            hour_spent_nanousd: self.hour.spent().0,
            max_per_hour_nanousd: limit(self.limits.per_hour),
        }
    }
}

/// The topology's budget (`budget:`): what all served tasks spent, against its limits (absent:
/// no limit). Interrupted tasks' worst cases are counted.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct BudgetView {
    /// Spent since the server first started (carried across restarts with `--state`).
    pub(crate) spent_nanousd: u64,
    /// `max_usd`.
    pub(crate) max_nanousd: Option<u64>,
    /// Spent in the current 24-hour period.
    pub(crate) day_spent_nanousd: u64,
    /// `max_usd_per_day`.
    pub(crate) max_per_day_nanousd: Option<u64>,
    /// Spent in the current hour.
    pub(crate) hour_spent_nanousd: u64,
    /// `max_usd_per_hour`.
    pub(crate) max_per_hour_nanousd: Option<u64>,
}

/// What the state file keeps of the budget: the total spent, across restarts.
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedBudget {
    pub(crate) spent_nanousd: u64,
}
