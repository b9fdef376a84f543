//! The console budget of one VM: a token bucket over guest lines.
//!
//! Every guest line (UVMHYP_PRINT or a PL011 line) costs one semihosting call, i.e. milliseconds
//! of the host's time, so a guest printing in a loop could flood the host and slow every other VM.
//! A VM may print a burst of [`LineBudget::BURST`] lines and then [`LineBudget::PER_SECOND`] lines
//! a second; lines over budget are dropped and counted (the count is reported at exit). Lines are
//! at most 1024 bytes (PRINT's limit, PL011's line buffer), so the budget bounds bytes too.
//!
//! The rule: **the budget is for floods, never for a kernel's own log.** The largest burst a
//! kernel prints is the replay of its whole log buffer when its console driver registers
//! (Debian's arm64 kernel: CONFIG_LOG_BUF_SHIFT=18, 256 KiB, at most ~4000 lines of 64 bytes); the
//! burst holds that. After it a kernel prints at its own pace, a few lines a second at most once
//! booted, far below the refill rate. A guest printing in a tight loop empties the burst in a
//! moment and is then held to the rate (the `hostile` scenario floods 10,000 lines).
//!
//! Time is the system counter (ticks at `freq` Hz), passed in so the arithmetic is host-tested.

/// Token bucket; tokens are counted in 1/`freq` line units so refill needs no division per tick.
#[derive(Clone, Debug)]
pub struct LineBudget {
    /// Available credit, in line·ticks-per-second units (`lines * freq`).
    credit: u128,
    /// Counter value of the last refill (`None` before the first line).
    last: Option<u64>,
    /// Lines refused so far.
    dropped: u64,
}

impl Default for LineBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBudget {
    /// Lines a VM may print at once: a whole kernel log buffer (module comment).
    pub const BURST: u64 = 4096;
    /// Lines a second after the burst.
    pub const PER_SECOND: u64 = 200;

    /// A full bucket.
    pub const fn new() -> Self {
        LineBudget { credit: u128::MAX, last: None, dropped: 0 }
    }

    /// May one more line be printed at counter value `now` (counter at `freq` Hz)? Counts the
    /// line as dropped when not.
    pub fn take(&mut self, now: u64, freq: u64) -> bool {
        let freq = u128::from(freq.max(1));
        let full = u128::from(Self::BURST) * freq;
        let elapsed = match self.last {
            Some(last) => u128::from(now.saturating_sub(last)),
            None => 0,
        };
        self.last = Some(now);
        self.credit = self.credit.min(full).saturating_add(elapsed * u128::from(Self::PER_SECOND)).min(full);
        if self.credit >= freq {
            self.credit -= freq;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Lines refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 62_500_000;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let mut b = LineBudget::new();
        let printed = (0..LineBudget::BURST + 100).filter(|_| b.take(1000, HZ)).count() as u64;
        assert_eq!(printed, LineBudget::BURST);
        assert_eq!(b.dropped(), 100);
        // One second later: PER_SECOND more lines, then nothing.
        let t = 1000 + HZ;
        let more = (0..1000).filter(|_| b.take(t, HZ)).count() as u64;
        assert_eq!(more, LineBudget::PER_SECOND);
        assert_eq!(b.dropped(), 100 + 1000 - LineBudget::PER_SECOND);
    }

    /// What a Linux kernel does to its console: when the console driver registers it replays the
    /// whole log buffer at once (Debian's CONFIG_LOG_BUF_SHIFT=18: 256 KiB, at most ~4000 lines of
    /// 64 bytes), then prints at its own pace (a boot: a few hundred lines in its first seconds;
    /// later, far fewer than PER_SECOND a second).
    #[test]
    fn a_linux_boot_log_is_never_dropped() {
        let mut b = LineBudget::new();
        assert!((0..4000).all(|_| b.take(HZ, HZ)));
        for s in 2..600u64 {
            assert!((0..LineBudget::PER_SECOND / 2).all(|i| b.take(s * HZ + i, HZ)), "second {s}");
        }
        assert_eq!(b.dropped(), 0);
    }

    #[test]
    fn an_idle_vm_gets_its_burst_back_but_no_more() {
        let mut b = LineBudget::new();
        assert!((0..LineBudget::BURST).all(|_| b.take(0, HZ)));
        assert!(!b.take(0, HZ));
        let t = 3600 * HZ;
        assert_eq!((0..2 * LineBudget::BURST).filter(|_| b.take(t, HZ)).count() as u64, LineBudget::BURST);
        // A counter that goes backwards (another CPU's reading) refills nothing.
        assert!(!b.take(t - 5, HZ));
    }
}
