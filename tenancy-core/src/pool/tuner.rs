//! Whether tenant affinity pays on this pool's own traffic, measured rather
//! than guessed.
//!
//! Affinity (looking through the idle connections for one that serves the
//! tenant, and keeping hot tenants on connections of their own) turns
//! switches into hits. It also costs: the search, and requests spread over
//! backends that sat idle, whose processes are cold in the CPU's caches.
//! Which side wins depends on the traffic (how skewed, how many threads) and
//! on the machine, so with [`TenantAffinity::Adaptive`] the pool measures
//! both. Checkouts are grouped in epochs of [`EPOCH`]; after a period of
//! epochs with the current choice, four epochs compare the two (the other,
//! the current, the current, the other: a drift of the machine over the four
//! hits both alike) by the mean time a connection is borrowed, from the
//! start of the checkout to its return. The other setting takes over only
//! when it is faster by more than [`MARGIN`]; a choice confirmed doubles the
//! period before the next comparison (up to [`MAX_PERIOD`], at once when the
//! other was slower by more than [`FAR_BEHIND`]), so a settled pool spends
//! under 2% of its epochs on the setting that lost. A setting already that
//! far behind after [`PROBE`] checkouts of a comparison is given up there,
//! so trying a much slower one costs a few hundred slow checkouts.
//!
//! The hot path is two relaxed atomic additions per checkout and two per
//! return; a lock is taken only at the end of an epoch, by one thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Checkouts per epoch.
pub(crate) const EPOCH: u64 = 2_048;
/// Epochs before the first comparison, and after a change of setting.
pub(crate) const FIRST_PERIOD: u32 = 8;
/// Longest period between two comparisons, in epochs.
pub(crate) const MAX_PERIOD: u32 = 128;
/// How much faster the other setting must be to take over.
pub(crate) const MARGIN: f64 = 0.02;
/// A setting this much slower than the chosen one is tried again only after
/// [`MAX_PERIOD`]: each epoch spent on it costs that much.
pub(crate) const FAR_BEHIND: f64 = 0.25;
/// Epochs of a comparison.
const COMPARED: u8 = 4;
/// Checkouts between two looks, in a comparison's first epoch, at whether
/// the other setting is already far behind (so that trying a setting that
/// is much slower costs a few hundred slow checkouts, not two epochs).
pub(crate) const PROBE: u64 = 256;

/// Whether a checkout looks for an idle connection that already serves the
/// tenant (see [`TenantPoolBuilder::tenant_affinity`](crate::TenantPoolBuilder::tenant_affinity)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TenantAffinity {
    /// Measure both on the pool's own traffic and use the faster, checking
    /// again from time to time. The default.
    #[default]
    Adaptive,
    /// Always look: hot tenants keep connections of their own.
    Always,
    /// Never look: hand out the most recently returned connection and switch
    /// it as needed.
    Never,
}

impl From<bool> for TenantAffinity {
    /// `true` is [`TenantAffinity::Always`], `false` [`TenantAffinity::Never`].
    fn from(on: bool) -> Self {
        if on {
            TenantAffinity::Always
        } else {
            TenantAffinity::Never
        }
    }
}

#[derive(Debug)]
pub(crate) struct Tuner {
    adaptive: bool,
    /// Affinity on for the checkouts of the current epoch.
    on: AtomicBool,
    checkouts: AtomicU64,
    /// Nanoseconds borrowed and borrows, by setting (`[off, on]`), since the
    /// current comparison or epoch began.
    nanos: [AtomicU64; 2],
    borrows: [AtomicU64; 2],
    /// In the first epoch of a comparison, trying the other setting.
    probing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The setting in use between comparisons.
    chosen: bool,
    /// Epochs left before the next comparison.
    left: u32,
    /// Epochs between comparisons.
    period: u32,
    /// The epoch of the comparison under way (`0..COMPARED`), if any.
    comparing: Option<u8>,
    /// Mean microseconds borrowed with affinity off and on, in the last comparison.
    last: Option<(f64, f64)>,
    /// Mean microseconds borrowed with the chosen setting in the last epoch
    /// before the comparison under way.
    baseline: Option<f64>,
}

/// What the tuner has found, for [`PoolState`](crate::PoolState).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub(crate) on: bool,
    pub(crate) last: Option<(f64, f64)>,
}

impl Tuner {
    pub(crate) fn new(setting: TenantAffinity) -> Self {
        let on = setting != TenantAffinity::Never;
        Self {
            adaptive: setting == TenantAffinity::Adaptive,
            on: AtomicBool::new(on),
            checkouts: AtomicU64::new(0),
            nanos: Default::default(),
            borrows: Default::default(),
            probing: AtomicBool::new(false),
            state: Mutex::new(State {
                chosen: on,
                left: FIRST_PERIOD,
                period: FIRST_PERIOD,
                comparing: None,
                last: None,
                baseline: None,
            }),
        }
    }

    /// Whether the checkout under way looks for a connection serving its tenant.
    pub(crate) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Counts a checkout; the last of an epoch moves the tuner on.
    pub(crate) fn checked_out(&self) {
        if !self.adaptive {
            return;
        }
        let n = self.checkouts.fetch_add(1, Ordering::Relaxed) + 1;
        if n % EPOCH == 0 {
            self.epoch_ended();
        } else if n % PROBE == 0 && self.probing.load(Ordering::Relaxed) {
            self.probe();
        }
    }

    /// A connection checked out with affinity `on` came back after `borrowed`.
    pub(crate) fn returned(&self, on: bool, borrowed: Duration) {
        if !self.adaptive {
            return;
        }
        let i = usize::from(on);
        let nanos = u64::try_from(borrowed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[i].fetch_add(nanos, Ordering::Relaxed);
        self.borrows[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reading(&self) -> Reading {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Reading { on: self.on(), last: state.last }
    }

    fn epoch_ended(&self) {
        // One thread per boundary gets here (the checkout counter says which);
        // others hold the lock only for a moment (`probe`, `reading`).
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.probing.store(false, Ordering::Relaxed);
        let on = match state.comparing {
            None => {
                state.baseline = self.mean(usize::from(state.chosen)).or(state.baseline);
                self.reset();
                if state.left > 1 {
                    state.left -= 1;
                    state.chosen
                } else {
                    state.comparing = Some(0);
                    self.probing.store(true, Ordering::Relaxed);
                    !state.chosen
                }
            }
            Some(k) if k + 1 < COMPARED => {
                state.comparing = Some(k + 1);
                // The other, the chosen, the chosen, the other.
                if k + 1 == COMPARED - 1 {
                    !state.chosen
                } else {
                    state.chosen
                }
            }
            Some(_) => {
                self.decide(&mut state);
                state.chosen
            }
        };
        self.on.store(on, Ordering::Relaxed);
    }

    /// Mean microseconds borrowed with setting `i` since the last reset.
    fn mean(&self, i: usize) -> Option<f64> {
        let n = self.borrows[i].load(Ordering::Relaxed);
        (n > 0).then(|| self.nanos[i].load(Ordering::Relaxed) as f64 / n as f64 / 1000.0)
    }

    fn reset(&self) {
        for i in 0..2 {
            self.nanos[i].store(0, Ordering::Relaxed);
            self.borrows[i].store(0, Ordering::Relaxed);
        }
    }

    /// In a comparison's first epoch: gives up on the other setting at once
    /// when it is already far behind the chosen one's last epoch.
    fn probe(&self) {
        let Ok(mut state) = self.state.try_lock() else { return };
        let other = usize::from(!state.chosen);
        let (Some(0), Some(baseline)) = (state.comparing, state.baseline) else { return };
        let Some(mean) =
            self.mean(other).filter(|_| self.borrows[other].load(Ordering::Relaxed) >= PROBE / 2)
        else {
            return;
        };
        if mean <= baseline * (1.0 + FAR_BEHIND) {
            return;
        }
        self.probing.store(false, Ordering::Relaxed);
        state.comparing = None;
        state.last = Some(if state.chosen { (mean, baseline) } else { (baseline, mean) });
        state.period = MAX_PERIOD;
        state.left = MAX_PERIOD;
        self.reset();
        self.on.store(state.chosen, Ordering::Relaxed);
    }

    fn decide(&self, state: &mut State) {
        state.comparing = None;
        let (Some(off), Some(on)) = (self.mean(0), self.mean(1)) else {
            state.left = state.period;
            return;
        };
        state.last = Some((off, on));
        // The next epoch's mean, the baseline of the next comparison, starts afresh.
        self.reset();
        let (chosen, other) = if state.chosen { (on, off) } else { (off, on) };
        if other < chosen * (1.0 - MARGIN) {
            state.chosen = !state.chosen;
            state.period = FIRST_PERIOD;
            tracing::debug!(target: "tenancy", affinity = state.chosen, off_micros = off, on_micros = on, "tenant affinity changed");
        } else if other > chosen * (1.0 + FAR_BEHIND) {
            state.period = MAX_PERIOD;
        } else {
            state.period = (state.period * 2).min(MAX_PERIOD);
        }
        state.left = state.period;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `epochs` epochs of checkouts, each borrowed for `cost(on)` µs.
    fn run(tuner: &Tuner, epochs: u64, cost: impl Fn(bool) -> u64) -> Vec<bool> {
        let mut settings = Vec::new();
        for _ in 0..epochs {
            settings.push(tuner.on());
            for _ in 0..EPOCH {
                let on = tuner.on();
                tuner.checked_out();
                tuner.returned(on, Duration::from_micros(cost(on)));
            }
        }
        settings
    }

    #[test]
    fn adaptive_moves_to_the_faster_setting_and_stays() {
        let tuner = Tuner::new(TenantAffinity::Adaptive);
        let settings = run(&tuner, 200, |on| if on { 300 } else { 200 });
        // On for the first period, then the comparison finds off faster.
        assert!(settings[..FIRST_PERIOD as usize].iter().all(|&on| on));
        assert!(!tuner.on());
        let reading = tuner.reading();
        assert_eq!(reading.last, Some((200.0, 300.0)));
        // Once settled, the losing setting runs only in comparisons: 2 of every period + 4 epochs.
        let late = &settings[100..];
        let on_share = late.iter().filter(|&&on| on).count() as f64 / late.len() as f64;
        assert!(on_share < 0.1, "affinity on in {on_share} of the settled epochs");
    }

    #[test]
    fn a_far_slower_setting_is_given_up_within_a_few_hundred_checkouts() {
        let tuner = Tuner::new(TenantAffinity::Adaptive);
        let mut off = Vec::new();
        for n in 0..200 * EPOCH {
            let on = tuner.on();
            if !on {
                off.push(n);
            }
            tuner.checked_out();
            tuner.returned(on, Duration::from_micros(if on { 100 } else { 250 }));
        }
        assert!(tuner.on());
        // Tried in the first comparison (epoch 8) and after the longest
        // period, each time for one look's worth of checkouts.
        assert_eq!(off.len() as u64, 2 * PROBE, "{} checkouts off", off.len());
        assert_eq!(off[0], 8 * EPOCH);
        assert!(off[off.len() - 1] > (8 + u64::from(MAX_PERIOD)) * EPOCH);
        assert_eq!(tuner.reading().last, Some((250.0, 100.0)));
    }

    #[test]
    fn a_close_race_is_compared_again_at_doubling_intervals() {
        let tuner = Tuner::new(TenantAffinity::Adaptive);
        let settings = run(&tuner, 200, |on| if on { 100 } else { 110 });
        assert!(tuner.on());
        // Comparisons starting at epochs 8, 28, 64, 132: two epochs off each.
        let off: Vec<usize> = (0..settings.len()).filter(|&i| !settings[i]).collect();
        assert_eq!(off, vec![8, 11, 28, 31, 64, 67, 132, 135]);
    }

    #[test]
    fn a_difference_within_the_margin_changes_nothing() {
        let tuner = Tuner::new(TenantAffinity::Adaptive);
        run(&tuner, 100, |on| if on { 101 } else { 100 });
        assert!(tuner.on());
    }

    #[test]
    fn a_change_of_traffic_is_followed() {
        let tuner = Tuner::new(TenantAffinity::Adaptive);
        run(&tuner, 60, |on| if on { 300 } else { 200 });
        assert!(!tuner.on());
        // At most a period of 128 epochs and a comparison later, it is back on.
        run(&tuner, u64::from(MAX_PERIOD) + 8, |on| if on { 100 } else { 200 });
        assert!(tuner.on());
    }

    #[test]
    fn fixed_settings_never_change() {
        for (setting, on) in [(TenantAffinity::Always, true), (TenantAffinity::Never, false)] {
            let tuner = Tuner::new(setting);
            let settings = run(&tuner, 40, |on| if on { 1_000 } else { 1 });
            assert!(settings.iter().all(|&s| s == on));
            assert_eq!(tuner.reading().last, None);
        }
        assert_eq!(TenantAffinity::from(true), TenantAffinity::Always);
        assert_eq!(TenantAffinity::from(false), TenantAffinity::Never);
        assert_eq!(TenantAffinity::default(), TenantAffinity::Adaptive);
    }
}
