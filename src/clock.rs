//! One time base for the whole run, and a timer precise enough to pace by.
//!
//! Every timestamp eventbench writes into a message or a report is nanoseconds
//! since the run's epoch. Using tokio's `Instant` keeps the pacer and phase
//! logic testable with tokio's paused clock. tokio's own timer wheel has a
//! resolution of one millisecond, which would add up to a millisecond of send
//! lag to every message of a paced run; [`Timer::precise`] sleeps on a Linux
//! timerfd with an absolute deadline instead.
//!
//! A run on a tokio runtime whose clock is paused (`#[tokio::test(start_paused
//! = true)]`) runs on virtual time: [`Clock::start`] sees the pause and
//! returns a virtual clock, on which [`Timer::precise`] is tokio's timer and
//! nothing busy-waits (a spin on a paused clock would never end). The swarm
//! then runs its tasks on the caller's runtime, and the probe and the CPU
//! meter, which read the machine's real time, report nothing
//! (ARCHITECTURE.md, "Virtual time").

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::time::{Duration, Instant};

/// A duration as flags and files write it: `10s`, `500ms`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{} is not a duration like 10s or 500ms ({e})", crate::text::quote(s)))
}

/// A duration the way [`parse_duration`] reads it back.
pub fn fmt_duration(d: &std::time::Duration) -> String {
    humantime::format_duration(*d).to_string().replace(' ', "")
}

/// The run's epoch; cheap to copy into every task.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    /// CLOCK_MONOTONIC at the epoch, in ns (what `Instant` counts in on Linux).
    epoch_mono_ns: u64,
    /// Counts tokio's paused clock, not the machine's (see [`Clock::virtual_`]).
    virtual_: bool,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_REALTIME in ns since 1970.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64).saturating_add_signed(skew_ns())
}

/// `EVENTBENCH_CLOCK_SKEW_MS`: a wall clock this far off (signed ms), to
/// feed the workers' offset measurement a host whose clock is wrong
/// (tests, and a user checking that a skew is caught; docs/src/hosts.md).
/// Read once; the wall clock is read a few times per run, never per message.
fn skew_ns() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("EVENTBENCH_CLOCK_SKEW_MS").ok().and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0)
            * 1_000_000
    })
}

/// Whether the calling thread's tokio runtime has its clock paused: tokio's
/// `Instant::now` then stands still while the machine's clock moves (time
/// advances only while the runtime waits). Asked once per run; it costs a
/// microsecond of spinning. Outside a runtime, false.
pub fn runtime_paused() -> bool {
    let before = Instant::now();
    let machine = std::time::Instant::now();
    while machine.elapsed() < std::time::Duration::from_micros(1) {
        std::hint::spin_loop();
    }
    // Unpaused, tokio's clock is the machine's, and a microsecond has passed on it.
    Instant::now() == before
}

impl Clock {
    /// Starts the run's time base now: on the machine's clock, or on
    /// virtual time ([`Clock::virtual_`]) where the runtime's clock is paused.
    pub fn start() -> Clock {
        if runtime_paused() {
            return Clock::virtual_();
        }
        // CLOCK_MONOTONIC read just after the epoch's `Instant`: never before
        // the epoch, so a timerfd armed from it never fires before `now_ns`
        // reaches its deadline (one that did once, by the time a preempted
        // thread lost between two reads, was never woken again). It is late by
        // the time between the two reads: the tightest of three tries.
        let tries = (0..3).map(|_| {
            let epoch = Instant::now();
            let mono = monotonic_ns();
            (epoch.elapsed(), Clock { epoch, epoch_mono_ns: mono, virtual_: false })
        });
        tries.min_by_key(|(bracket, _)| *bracket).expect("three tries").1
    }

    /// A time base on tokio's clock alone, for a run under a paused clock:
    /// its timers are tokio's (no timerfd, which counts the machine's time),
    /// and nothing spins. Every wake-up then lands on tokio's millisecond
    /// grid, which is late by less than a millisecond, exactly as the
    /// schedule of the virtual run says.
    pub fn virtual_() -> Clock {
        Clock { epoch: Instant::now(), epoch_mono_ns: 0, virtual_: true }
    }

    /// Whether this clock counts virtual time ([`Clock::virtual_`]): what
    /// reads the machine's own time (the probe, the CPU meter) has nothing
    /// to say about such a run, and the swarm runs on the caller's runtime.
    pub fn is_virtual(&self) -> bool {
        self.virtual_
    }

    /// A time base whose epoch is the wall-clock instant `epoch_unix_ns`
    /// (ns since 1970 on this host's CLOCK_REALTIME), for a run that several
    /// processes share: each gives the same instant, corrected by its own
    /// offset to a common reference. The wall clock is read only here; time
    /// is still counted on the monotonic clock, which NTP cannot step.
    /// `None` if that instant lies ahead, or before this host's monotonic
    /// clock began (at boot).
    pub fn at_wall_clock(epoch_unix_ns: u64) -> Option<Clock> {
        let (now, mono, wall) = (Instant::now(), monotonic_ns(), realtime_ns());
        let since = Duration::from_nanos(wall.checked_sub(epoch_unix_ns)?);
        let epoch = now.checked_sub(since)?;
        Some(Clock { epoch, epoch_mono_ns: mono.checked_sub(since.as_nanos() as u64)?, virtual_: false })
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant that lies `ns` nanoseconds after the epoch.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Sleeps until `ns` after the epoch with tokio's timer (millisecond resolution).
    pub async fn sleep_until_ns(&self, ns: u64) {
        tokio::time::sleep_until(self.instant_at(ns)).await
    }
}

/// A sleeper for the pacer: a timerfd (microsecond wake-ups), or tokio's
/// timer where time must be virtual (tests with a paused clock).
pub struct Timer {
    clock: Clock,
    fd: Option<AsyncFd<OwnedFd>>,
    /// The last part of each sleep that is spent busy-waiting (see [`Timer::spinning`]).
    spin_ns: u64,
}

/// Longest busy-wait before a deadline.
const SPIN_MAX_NS: u64 = 100_000;

/// How long pacers sending `rate` messages per second in all busy-wait before
/// each deadline: a tenth of the period, at most 100 µs, so that together they
/// never spin more than a tenth of one CPU. Nothing for an unlimited rate.
pub fn spin_for_rate(rate: f64) -> u64 {
    if rate > 0.0 {
        ((1e8 / rate) as u64).min(SPIN_MAX_NS)
    } else {
        0
    }
}

impl Timer {
    /// A timer on tokio's clock.
    pub fn coarse(clock: Clock) -> Timer {
        Timer { clock, fd: None, spin_ns: 0 }
    }

    /// A timer on a timerfd; falls back to tokio's timer if one cannot be
    /// made, and is tokio's timer on a virtual clock.
    pub fn precise(clock: Clock) -> Timer {
        if clock.virtual_ {
            return Timer::coarse(clock);
        }
        // SAFETY: timerfd_create returns a new descriptor (which we then own) or -1;
        // the OwnedFd stays open for as long as the AsyncFd that holds it.
        let fd = unsafe {
            let raw = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC);
            if raw < 0 {
                None
            } else {
                AsyncFd::register(OwnedFd::from_raw_fd(raw)).ok()
            }
        };
        Timer { clock, fd, spin_ns: 0 }
    }

    /// Wakes up to `spin_ns` before each deadline and busy-waits the rest. A
    /// sleeping thread takes tens of microseconds to run again after its
    /// timer fires (measured here: 35 µs at the median on a 2-CPU VM), and
    /// that would count in every message's latency as if Redis had taken it.
    /// Not on a virtual clock: it stands still while a thread spins.
    pub fn spinning(mut self, spin_ns: u64) -> Timer {
        self.spin_ns = if self.clock.virtual_ { 0 } else { spin_ns };
        self
    }

    /// The clock this timer sleeps on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Sleeps until `ns` after the epoch (returns at once if that has passed).
    pub async fn sleep_until_ns(&mut self, ns: u64) {
        let wake = ns.saturating_sub(self.spin_ns);
        if self.clock.now_ns() < wake {
            self.sleep(wake).await;
        }
        while self.clock.now_ns() < ns {
            std::hint::spin_loop();
        }
    }

    /// Sleeps until `ns` after the epoch without the busy-wait: for a wake-up
    /// whose exact moment does not matter to any message.
    pub async fn sleep_until_ns_unspun(&mut self, ns: u64) {
        if self.clock.now_ns() < ns {
            self.sleep(ns).await;
        }
    }

    async fn sleep(&mut self, ns: u64) {
        let Some(fd) = &self.fd else { return self.clock.sleep_until_ns(ns).await };
        if arm(fd.get_ref(), self.clock.epoch_mono_ns + ns).is_err() {
            return self.clock.sleep_until_ns(ns).await;
        }
        // The expiration count is never read: arming again resets it, and
        // tokio's epoll is edge-triggered, so each expiry is an event of its
        // own. That saves two reads a wake-up (the count, then the read that
        // finds nothing and clears tokio's readiness). An event of an earlier
        // arming (a sleep that was cancelled after all) is told apart by the clock.
        loop {
            let Ok(mut guard) = fd.readable().await else { return self.clock.sleep_until_ns(ns).await };
            guard.clear_ready();
            let now = self.clock.now_ns();
            if now >= ns {
                return;
            }
            if ns - now <= CLOCK_SKEW_NS {
                // This expiry, seen through the epoch's rounding: wait out the rest here.
                while self.clock.now_ns() < ns {
                    std::hint::spin_loop();
                }
                return;
            }
            if expired(fd.get_ref()) {
                // This arming fired, yet the run's clock is short of its deadline
                // by more than the conversion's slack: no second event will come.
                return self.clock.sleep_until_ns(ns).await;
            }
        }
    }
}

/// How far `Clock::now_ns` may trail the timerfd's CLOCK_MONOTONIC at the
/// same instant: the epoch is converted between the two once, at the start.
const CLOCK_SKEW_NS: u64 = 5_000;

/// Arms a timerfd for an absolute CLOCK_MONOTONIC time.
fn arm(fd: &OwnedFd, mono_ns: u64) -> io::Result<()> {
    let at = libc::timespec { tv_sec: (mono_ns / 1_000_000_000) as _, tv_nsec: (mono_ns % 1_000_000_000) as _ };
    let spec = libc::itimerspec { it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 }, it_value: at };
    // SAFETY: timerfd_settime reads the struct we pass; the old value is not asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the timerfd's current arming has fired (reads its expiration
/// count, which arming again resets; nothing to read means not yet).
fn expired(fd: &OwnedFd) -> bool {
    let mut count = 0u64;
    // SAFETY: reads at most 8 bytes into the u64 we own; the fd is non-blocking.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    n == 8 && count > 0
}

/// What a wake-up is taken to cost where it cannot be measured: a bare
/// timerfd wake-up measured 25 to 29 µs of CPU on a 2-CPU VM (`scripts/wakeup.c`).
const FALLBACK_WAKEUP_NS: u64 = 25_000;
/// Wake-ups measured, and the period they come at.
const PROBE_WAKEUPS: u64 = 200;
const PROBE_PERIOD_NS: u64 = 50_000;

/// CPU (user and system) that one timer wake-up costs a thread of this
/// process, ns: measured once, by a thread that sleeps on a periodic timerfd
/// for 200 wake-ups (10 ms), then kept. The pacing window's `auto` spends a
/// share of a CPU on wake-ups (`scenario::pacing`); this says how many that
/// share buys on this machine.
pub fn wakeup_cost_ns() -> u64 {
    static COST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *COST.get_or_init(|| {
        let measured = std::thread::spawn(measure_wakeup_cost).join().ok().flatten();
        measured.unwrap_or(FALLBACK_WAKEUP_NS).clamp(1_000, 200_000)
    })
}

fn measure_wakeup_cost() -> Option<u64> {
    // SAFETY: timerfd_create returns a new descriptor (owned from here on) or -1.
    let fd = unsafe {
        let raw = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
        (raw >= 0).then(|| OwnedFd::from_raw_fd(raw))?
    };
    // Every 50 µs from 50 µs on (relative): a periodic timerfd re-arms as each blocking read takes its count.
    let every = libc::timespec { tv_sec: 0, tv_nsec: PROBE_PERIOD_NS as _ };
    let spec = libc::itimerspec { it_interval: every, it_value: every };
    // SAFETY: timerfd_settime reads the struct we pass; the old value is not asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
        return None;
    }
    let before = thread_cpu_ns()?;
    let mut woken = 0;
    while woken < PROBE_WAKEUPS {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a u64 we own; a blocking timerfd read waits for an expiry.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8) };
        if n != 8 {
            return None;
        }
        woken += 1;
    }
    Some((thread_cpu_ns()? - before) / woken)
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> Option<u64> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (r == 0).then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// Lets this thread's timers fire within a microsecond instead of Linux's
/// default 50 µs slack.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The median lateness of 50 sleeps of `timer`, each `ahead` ns long (plus
    /// `i` ns: a deadline of its own each time). No sleep may end early.
    async fn median_lateness(timer: &mut Timer, ahead: u64) -> u64 {
        let clock = *timer.clock();
        let mut late = Vec::new();
        for i in 1..=50u64 {
            let deadline = clock.now_ns() + ahead + i;
            timer.sleep_until_ns(deadline).await;
            let now = clock.now_ns();
            assert!(now >= deadline, "woke {} ns early", deadline - now);
            late.push(now - deadline);
        }
        late.sort_unstable();
        late[25]
    }

    /// Whether some round of 50 sleeps has a median lateness under `bound` ns.
    /// A busy machine only ever makes a sleep later (a preempted thread, a
    /// wake-up that waits for a CPU), not the timer more precise: the best of
    /// five rounds is what the timer does when the machine lets it run.
    async fn meets(timer: &mut Timer, ahead: u64, bound: u64) -> Result<(), Vec<u64>> {
        let mut medians = Vec::new();
        for _ in 0..5 {
            medians.push(median_lateness(timer, ahead).await);
            if medians.last() < Some(&bound) {
                return Ok(());
            }
        }
        Err(medians)
    }

    #[tokio::test]
    async fn precise_timer_wakes_close_to_the_deadline() {
        tighten_timer_slack();
        let mut timer = Timer::precise(Clock::start());
        assert!(timer.fd.is_some(), "timerfd available on Linux");
        // tokio's timer would be ~500 µs late on average; a timerfd, tens of µs.
        let r = meets(&mut timer, 300_000, 200_000).await;
        assert!(r.is_ok(), "median lateness of each round (ns): {r:?}");
    }

    #[test]
    fn a_wakeup_is_measured_in_cpu_time() {
        let cost = measure_wakeup_cost().expect("a timerfd and the thread's CPU clock on Linux");
        // Not a speed check: a wake-up costs something, and far less than its 50 µs period of a sleeping thread.
        assert!(cost > 0 && cost < PROBE_PERIOD_NS * 4, "{cost} ns");
    }

    #[tokio::test]
    async fn spinning_timer_wakes_on_the_deadline() {
        tighten_timer_slack();
        let mut timer = Timer::precise(Clock::start()).spinning(100_000);
        let r = meets(&mut timer, 300_000, 20_000).await;
        assert!(r.is_ok(), "median lateness of each round (ns): {r:?}");
    }

    #[tokio::test]
    async fn an_abandoned_sleep_never_ends_a_later_one_early() {
        tighten_timer_slack();
        let clock = Clock::start();
        let mut timer = Timer::precise(clock);
        for _ in 0..20 {
            // Armed for 100 µs and given up at once: it fires while nobody waits.
            let soon = clock.now_ns() + 100_000;
            {
                let sleep = std::pin::pin!(timer.sleep_until_ns_unspun(soon));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                assert!(std::future::Future::poll(sleep, &mut cx).is_pending(), "armed, not yet due");
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
            // The runtime polls its epoll meanwhile, and takes the expiry in.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            let deadline = clock.now_ns() + 2_000_000;
            timer.sleep_until_ns_unspun(deadline).await;
            let now = clock.now_ns();
            assert!(now >= deadline, "woke {} ns early", deadline - now);
        }
    }

    #[test]
    fn a_wall_clock_epoch_counts_from_that_instant() {
        let ago = realtime_ns() - 2_000_000_000;
        let clock = Clock::at_wall_clock(ago).unwrap();
        assert!(Clock::at_wall_clock(realtime_ns() + 1_000_000_000).is_none(), "an epoch ahead is refused");
        // Bracketed by the wall clock, so that a stalled thread cannot fail it.
        let before = realtime_ns() - ago;
        let now = clock.now_ns();
        let after = realtime_ns() - ago;
        assert!(
            before - 1_000_000 <= now && now <= after + 1_000_000,
            "{now} ns since the epoch, not in [{before}, {after}]"
        );
        let mono_now = monotonic_ns();
        let diff = (mono_now - clock.epoch_mono_ns) as i64 - clock.now_ns() as i64;
        assert!(diff.abs() < 5_000_000, "timerfd deadlines agree with now_ns ({diff} ns)");
    }

    #[tokio::test]
    async fn a_timerfd_that_fires_before_the_clock_says_so_still_ends_the_sleep() {
        // The run's clock converted to CLOCK_MONOTONIC 1 ms early, as a thread
        // preempted between the two reads of `Clock::start` once made it: the
        // timerfd fires 1 ms before `now_ns` reaches the deadline, and fires once.
        let mut clock = Clock::start();
        clock.epoch_mono_ns -= 1_000_000;
        for spin in [0, 100_000] {
            let mut timer = Timer::precise(clock).spinning(spin);
            for _ in 0..3 {
                let deadline = clock.now_ns() + 5_000_000;
                let sleep = timer.sleep_until_ns(deadline);
                let woke = tokio::time::timeout(std::time::Duration::from_secs(2), sleep).await;
                assert!(woke.is_ok(), "the sleep never ended (spin {spin} ns)");
                assert!(clock.now_ns() >= deadline);
            }
        }
    }

    #[test]
    fn the_timerfd_epoch_is_never_before_the_clocks() {
        for _ in 0..1000 {
            let clock = Clock::start();
            // Were the timerfd's epoch early, CLOCK_MONOTONIC would count more
            // since it than `now_ns` read after it.
            let since_mono = monotonic_ns() - clock.epoch_mono_ns;
            assert!(since_mono <= clock.now_ns(), "{since_mono} ns on the timerfd's clock");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_runtime_runs_on_a_virtual_clock_with_tokios_timer_and_no_spin() {
        let clock = Clock::start();
        assert!(clock.is_virtual() && runtime_paused());
        let mut timer = Timer::precise(clock).spinning(100_000);
        assert!(timer.fd.is_none() && timer.spin_ns == 0, "no timerfd, no spin on a clock that stands still");
        // Each wake-up lands on tokio's millisecond grid, never early, less than a millisecond late.
        for deadline in [1, 2_500_000, 2_500_001, 7_000_000, 1_000_000_000] {
            timer.sleep_until_ns(deadline).await;
            let now = clock.now_ns();
            assert!(now >= deadline && now < deadline + 1_000_000, "woke at {now} for {deadline}");
        }
    }

    #[tokio::test]
    async fn a_running_runtime_or_none_runs_on_the_machines_clock() {
        assert!(!runtime_paused() && !Clock::start().is_virtual());
        let outside = std::thread::spawn(|| runtime_paused() || Clock::start().is_virtual()).join().unwrap();
        assert!(!outside, "outside any runtime: the machine's clock");
    }

    #[test]
    fn spinning_takes_a_tenth_of_the_period_at_most_100_us() {
        assert_eq!(spin_for_rate(0.0), 0, "unlimited: never sleeps, never spins");
        assert_eq!(spin_for_rate(1000.0), 100_000);
        assert_eq!(spin_for_rate(100.0), 100_000);
        assert_eq!(spin_for_rate(20_000.0), 5_000);
        assert_eq!(spin_for_rate(1e9), 0);
    }
}
