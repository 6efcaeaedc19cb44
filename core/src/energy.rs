//! Energy: what a model call or a tool call burned, in joules, and how Baton knows.
//!
//! Three ways, each named on every figure ([`EnergyMethod`]):
//! - **hosted models**: estimated from the model's size and the output tokens it generated,
//!   following EcoLogits' LLM-inference methodology ([`hosted_joules`]; sources and constants
//!   in `docs/tokenomics.md`);
//! - **the embedded local model and tools**: their measured CPU time × a per-core power figure
//!   ([`CpuPower`]): measured from RAPL when the machine exposes it, else a declared figure or
//!   CodeCarbon's fallback (half of a default TDP, shared by the cores);
//! - **unknown**: a model of undeclared size — no figure, never a guess.
//!
//! Figures are integer micro-joules, so that sums over a run are exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an energy figure was obtained.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// Measured CPU time × a power figure measured by RAPL on this machine.
    Measured,
    /// A model: EcoLogits' regression for hosted models, or measured CPU time × a declared or
    /// default power figure.
    Estimated,
    /// No figure: the model's size is not known.
    #[default]
    Unknown,
}

impl EnergyMethod {
    /// The label used in metrics and the audit.
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::Measured => "measured",
            EnergyMethod::Estimated => "estimated",
            EnergyMethod::Unknown => "unknown",
        }
    }
}

/// One call's energy: micro-joules and how they were obtained (zero micro-joules with
/// [`EnergyMethod::Unknown`] when there is no figure).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Energy {
    /// Micro-joules.
    pub microjoules: u64,
    /// How they were obtained.
    pub method: EnergyMethod,
}

impl Energy {
    /// No figure.
    pub const UNKNOWN: Energy = Energy {
        microjoules: 0,
        method: EnergyMethod::Unknown,
    };

    /// A figure from joules (rounded to the micro-joule; negative or non-finite reads as zero).
    pub fn from_joules(joules: f64, method: EnergyMethod) -> Energy {
        let uj = joules * 1e6;
        Energy {
            microjoules: if uj.is_finite() && uj > 0.0 {
                uj.round() as u64
            } else {
                0
            },
            method,
        }
    }

    /// Joules.
    pub fn joules(self) -> f64 {
        self.microjoules as f64 / 1e6
    }
}

/// A hosted model's size in billions of parameters: `active` drives the energy per token,
/// `total` how many GPUs hold the model.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSize {
    /// Active parameters per token (a dense model's whole size; a mixture of experts' active
    /// share), in billions.
    pub active_b: f64,
    /// Total parameters, in billions.
    pub total_b: f64,
}

/// EcoLogits' constants (LLM inference methodology v1.0; see `docs/tokenomics.md`).
pub mod ecologits {
    /// GPU energy per output token per billion active parameters, Wh.
    pub const ALPHA_WH: f64 = 8.91e-5;
    /// GPU energy per output token, intercept, Wh.
    pub const BETA_WH: f64 = 1.43e-3;
    /// Generation latency per output token per billion active parameters, s.
    pub const LATENCY_A_S: f64 = 8.02e-4;
    /// Generation latency per output token, intercept, s.
    pub const LATENCY_B_S: f64 = 2.23e-2;
    /// Power of the server without its GPUs, W.
    pub const SERVER_W: f64 = 1000.0;
    /// GPUs installed in the server.
    pub const GPUS_INSTALLED: f64 = 8.0;
    /// Memory of one GPU (NVIDIA A100 80 GB), GB.
    pub const GPU_MEMORY_GB: f64 = 80.0;
    /// Bits per weight assumed (quantised to 4 bits).
    pub const WEIGHT_BITS: f64 = 4.0;
    /// Memory overhead over the weights.
    pub const MEMORY_OVERHEAD: f64 = 1.2;
    /// Power usage effectiveness of the data centre (cooling and the rest), the default.
    pub const PUE: f64 = 1.2;
}

/// The GPUs EcoLogits assumes hold a model of `total_b` billion parameters.
pub fn gpus_for(total_b: f64) -> f64 {
    use ecologits::*;
    (MEMORY_OVERHEAD * total_b * WEIGHT_BITS / 8.0 / GPU_MEMORY_GB)
        .ceil()
        .max(1.0)
}

/// The energy of one hosted call that generated `output_tokens`, in joules, by EcoLogits'
/// formula: `PUE × (ΔT × W_server × GPU / 8 + GPU × T_out × (α × P_active + β))` with
/// `ΔT = T_out × (A × P_active + B)`. Input tokens (prefill) are not part of the model (see
/// `docs/tokenomics.md`).
pub fn hosted_joules(size: ModelSize, output_tokens: u64, pue: f64) -> f64 {
    use ecologits::*;
    let out = output_tokens as f64;
    let gpus = gpus_for(size.total_b);
    let gpu_wh = out * (ALPHA_WH * size.active_b + BETA_WH);
    let latency_s = out * (LATENCY_A_S * size.active_b + LATENCY_B_S);
    let server_wh = latency_s / 3600.0 * SERVER_W * gpus / GPUS_INSTALLED;
    pue * (server_wh + gpus * gpu_wh) * 3600.0
}

/// Where the per-core power figure comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// `energy: { cpu_watts_per_core }` in the topology.
    Declared,
    /// RAPL package counters over /proc/stat's busy time, sampled every second.
    Rapl,
    /// CodeCarbon's fallback: half of an 85 W TDP, shared by the cores.
    Fallback,
}

/// The power one busy core draws, to turn measured CPU time into energy.
#[derive(Debug)]
pub struct CpuPower {
    declared: Option<f64>,
    fallback: f64,
    /// The last RAPL figure, f64 bits (0 = none yet).
    rapl: Option<Arc<AtomicU64>>,
}

impl CpuPower {
    /// A declared figure (watts per busy core), or the machine's: RAPL when readable, else the
    /// fallback.
    pub fn new(declared: Option<f64>) -> CpuPower {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let fallback = crate::defaults::TDP_W * 0.5 / cores as f64;
        let rapl = if declared.is_none() {
            rapl::shared()
        } else {
            None
        };
        CpuPower {
            declared,
            fallback,
            rapl,
        }
    }

    /// A fixed figure (tests, or a machine whose power is known).
    pub fn fixed(watts_per_core: f64) -> CpuPower {
        CpuPower {
            declared: Some(watts_per_core),
            fallback: watts_per_core,
            rapl: None,
        }
    }

    /// Watts per busy core now, and where the figure comes from.
    pub fn watts_per_core(&self) -> (f64, PowerSource) {
        if let Some(w) = self.declared {
            return (w, PowerSource::Declared);
        }
        if let Some(cell) = &self.rapl {
            let w = f64::from_bits(cell.load(Ordering::Relaxed));
            if w > 0.0 {
                return (w, PowerSource::Rapl);
            }
        }
        (self.fallback, PowerSource::Fallback)
    }

    /// The energy of `cpu` seconds of work: measured when the power comes from RAPL,
    /// estimated otherwise.
    pub fn energy(&self, cpu: Duration) -> Energy {
        let (w, source) = self.watts_per_core();
        let method = if source == PowerSource::Rapl {
            EnergyMethod::Measured
        } else {
            EnergyMethod::Estimated
        };
        Energy::from_joules(cpu.as_secs_f64() * w, method)
    }
}

/// Reading RAPL (`/sys/class/powercap/intel-rapl:*`) and /proc/stat.
pub mod rapl {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Where the kernel exposes RAPL.
    pub const ROOT: &str = "/sys/class/powercap";
    /// Busy time below this in a sampling window is too little to divide by.
    const MIN_BUSY_S: f64 = 0.05;

    /// The package zones (`intel-rapl:N`, not their sub-zones) under `root`, with their
    /// counters' wrap-around ranges.
    pub fn packages(root: &Path) -> Vec<(PathBuf, u64)> {
        let Ok(dir) = std::fs::read_dir(root) else {
            return Vec::new();
        };
        let mut zones: Vec<(PathBuf, u64)> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("intel-rapl:") && n.matches(':').count() == 1)
            })
            .filter_map(|p| {
                read_u64(&p.join("energy_uj"))?;
                let range = read_u64(&p.join("max_energy_range_uj")).unwrap_or(u64::MAX);
                Some((p, range))
            })
            .collect();
        zones.sort();
        zones
    }

    fn read_u64(path: &Path) -> Option<u64> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The packages' counters now (micro-joules).
    pub fn counters(zones: &[(PathBuf, u64)]) -> Option<Vec<u64>> {
        zones
            .iter()
            .map(|(p, _)| read_u64(&p.join("energy_uj")))
            .collect()
    }

    /// Energy between two readings, across wrap-arounds, in joules.
    pub fn joules_between(zones: &[(PathBuf, u64)], before: &[u64], after: &[u64]) -> f64 {
        zones
            .iter()
            .zip(before.iter().zip(after))
            .map(|((_, range), (&b, &a))| {
                let d = if a >= b {
                    a - b
                } else {
                    range.saturating_sub(b).saturating_add(a)
                };
                d as f64 / 1e6
            })
            .sum()
    }

    /// Busy CPU time of the machine (all cores, user + nice + system + irq + softirq + steal),
    /// from the first line of /proc/stat, in seconds.
    pub fn busy_seconds(stat: &str) -> Option<f64> {
        let line = stat.lines().next()?;
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal
        let busy = [0usize, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&i| v.get(i))
            .sum::<u64>();
        // USER_HZ is 100 on every Linux the kernel ABI documents for /proc/stat.
        Some(busy as f64 / 100.0)
    }

    /// Watts per busy core over a window: the packages' energy over the machine's busy time.
    pub fn watts_per_busy_core(joules: f64, busy_s: f64) -> Option<f64> {
        (busy_s >= MIN_BUSY_S && joules > 0.0).then(|| joules / busy_s)
    }

    /// The process's one sampler of the machine's RAPL, started on first use (every runtime
    /// shares it: one thread, not one per runtime built); `None` without RAPL.
    pub fn shared() -> Option<Arc<AtomicU64>> {
        static SAMPLER: std::sync::OnceLock<Option<Arc<AtomicU64>>> = std::sync::OnceLock::new();
        SAMPLER.get_or_init(|| start(Path::new(ROOT))).clone()
    }

    /// Starts a sampler when RAPL is readable under `root`: a thread that every second stores
    /// the watts per busy core of the last second (kept when the machine was idle). It runs for
    /// the life of the process: call [`shared`] rather than this.
    pub fn start(root: &Path) -> Option<Arc<AtomicU64>> {
        let zones = packages(root);
        if zones.is_empty() {
            return None;
        }
        let cell = Arc::new(AtomicU64::new(0));
        let out = Arc::clone(&cell);
        std::thread::Builder::new()
            .name("baton-rapl".into())
            .spawn(move || {
                let stat = || std::fs::read_to_string("/proc/stat").ok();
                let mut prev = counters(&zones).zip(stat().as_deref().and_then(busy_seconds));
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let now = counters(&zones).zip(stat().as_deref().and_then(busy_seconds));
                    if let (Some((eb, bb)), Some((ea, ba))) = (&prev, &now)
                        && let Some(w) =
                            watts_per_busy_core(joules_between(&zones, eb, ea), ba - bb)
                    {
                        out.store(w.to_bits(), Ordering::Relaxed);
                    }
                    prev = now;
                }
            })
            .ok()?;
        Some(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosted_energy_follows_the_ecologits_formula() {
        // A dense 70 B model, 100 output tokens, PUE 1.2: one GPU (1.2 × 70 × 4 / 8 = 42 GB).
        let size = ModelSize {
            active_b: 70.0,
            total_b: 70.0,
        };
        assert_eq!(gpus_for(70.0), 1.0);
        let gpu_wh = 100.0 * (8.91e-5 * 70.0 + 1.43e-3);
        let server_wh = 100.0 * (8.02e-4 * 70.0 + 2.23e-2) / 3600.0 * 1000.0 / 8.0;
        let want = 1.2 * (server_wh + gpu_wh) * 3600.0;
        let got = hosted_joules(size, 100, 1.2);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // 440 B total (a mixture of experts): 1.2 × 440 × 4 / 8 = 264 GB → 4 GPUs.
        assert_eq!(gpus_for(440.0), 4.0);
        assert_eq!(hosted_joules(size, 0, 1.2), 0.0);
    }

    #[test]
    fn cpu_energy_is_cpu_time_times_power() {
        let p = CpuPower::fixed(12.5);
        let e = p.energy(Duration::from_millis(2_000));
        assert_eq!(e.microjoules, 25_000_000);
        assert_eq!(e.method, EnergyMethod::Estimated);
    }

    #[test]
    fn rapl_readings_from_a_powercap_tree() {
        let dir = std::env::temp_dir().join(format!("baton-rapl-{}", std::process::id()));
        let pkg = dir.join("intel-rapl:0");
        let sub = dir.join("intel-rapl:0:0");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(pkg.join("energy_uj"), "999000000\n").unwrap();
        std::fs::write(pkg.join("max_energy_range_uj"), "1000000000\n").unwrap();
        std::fs::write(sub.join("energy_uj"), "5\n").unwrap();
        let zones = rapl::packages(&dir);
        assert_eq!(zones.len(), 1, "sub-zones are part of their package");
        let before = rapl::counters(&zones).unwrap();
        // The counter wraps: 999 J → 1000 J (range) → 19 J: 20 J in all.
        std::fs::write(pkg.join("energy_uj"), "19000000\n").unwrap();
        let after = rapl::counters(&zones).unwrap();
        let j = rapl::joules_between(&zones, &before, &after);
        assert!((j - 20.0).abs() < 1e-9, "{j}");
        // /proc/stat: user 100, nice 0, system 50, idle 1000, iowait 5, irq 0, softirq 10,
        // steal 0 (jiffies): 1.6 busy seconds.
        let busy = rapl::busy_seconds("cpu  100 0 50 1000 5 0 10 0 0 0\ncpu0 1 2 3\n").unwrap();
        assert!((busy - 1.6).abs() < 1e-9, "{busy}");
        assert_eq!(rapl::watts_per_busy_core(20.0, 1.6), Some(12.5));
        assert_eq!(rapl::watts_per_busy_core(20.0, 0.0), None, "an idle window");
        std::fs::remove_dir_all(&dir).ok();
        assert!(rapl::packages(&dir).is_empty(), "no RAPL: no sampler");
    }
}
