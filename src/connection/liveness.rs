//! Noticing a peer that went away without a word.
//!
//! A server that dies without a FIN or RST (a VM gone, a NAT entry dropped, a load balancer that
//! blackholes) leaves the socket "open" until the kernel gives up retransmitting, about fifteen
//! minutes. Two things shorten that:
//!
//! - **TCP keepalive** on every socket ([`Liveness::keepalive`]): the kernel probes an idle
//!   connection and resets it when the probes go unanswered.
//! - **A health rule of our own** that does not wait for the kernel. When commands have been
//!   outstanding for a whole [`Liveness::timeout`] with nothing read, the I/O task writes a
//!   `PING`; if nothing is read for another `timeout`, the connection is declared dead: its
//!   commands in flight fail with [`Error::ConnectionLost`](crate::Error::ConnectionLost) (they
//!   may have run), and the layer above (HandoffRetry) reconnects. A connection with nothing
//!   outstanding is probed the same way after [`Liveness::idle_ping`], so a dead idle
//!   connection is found before the next command needs it. Any byte read counts as life: a
//!   server slowly streaming a large reply is not probed; nor is a connection still writing
//!   its oldest command (the server cannot answer before it has it all). A dedicated connection (one owner, who may be inside a `MULTI`) is never sent a
//!   `PING`: silent with replies owed for two periods, it is taken for dead all the same.
//!
//! While the connection is told of maintenance (`MIGRATING`, `FAILING_OVER`, `SMIGRATING` until
//! their end, `MOVING`, for at most [`Liveness::relaxed_timeout`]) the rule uses
//! [`Liveness::relaxed_timeout`] instead, as command timeouts relax then. While a blocking
//! command (`BLPOP`, `XREAD ... BLOCK`, `WAIT`, ...) is outstanding the server is silent on
//! purpose, so silence is not counted; keepalive still covers that connection.
//!
//! The check runs on one timer per connection that fires once per `timeout` (once per
//! `idle_ping` while idle): the hot path only counts reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::clock::deadline as after;

/// How a connection finds out that its peer is gone: TCP keepalive, and a `PING` when replies
/// are owed and nothing has been read for [`Liveness::timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Liveness {
    /// Commands outstanding with nothing read for this long: the connection is probed with
    /// `PING`, and declared dead if nothing is read for as long again (so a dead connection is
    /// found after two to three times this). `None` turns the rule off. Default 5 s; a
    /// [`Stack`](crate::Stack) sets it to its command timeout (at least 1 s) when left at the
    /// default. A single command that keeps the server busy for longer than twice this (a slow
    /// script) makes the connection look dead: raise it for such workloads.
    pub timeout: Option<Duration>,
    /// The same bound while the connection is told of maintenance. Default 15 s.
    pub relaxed_timeout: Duration,
    /// A connection with nothing outstanding is probed with `PING` after this long without a
    /// read. Default 30 s; `None` turns idle probing off.
    pub idle_ping: Option<Duration>,
    /// TCP keepalive: the idle time before the kernel's first probe (then every 5 s, 3 probes).
    /// Default 15 s; `None` leaves the socket's keepalive off.
    pub keepalive: Option<Duration>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            timeout: Some(Duration::from_secs(5)),
            relaxed_timeout: Duration::from_secs(15),
            idle_ping: Some(Duration::from_secs(30)),
            keepalive: Some(Duration::from_secs(15)),
        }
    }
}

impl Liveness {
    /// No health checks and no keepalive: the connection lives until the socket says otherwise.
    pub fn off() -> Self {
        Liveness {
            timeout: None,
            relaxed_timeout: Duration::ZERO,
            idle_ping: None,
            keepalive: None,
        }
    }

    /// The same, with this silence bound (see [`Liveness::timeout`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same, with this idle probe interval (see [`Liveness::idle_ping`]).
    #[must_use]
    pub fn with_idle_ping(mut self, every: Option<Duration>) -> Self {
        self.idle_ping = every;
        self
    }

    /// The same, with this keepalive idle time (see [`Liveness::keepalive`]).
    #[must_use]
    pub fn with_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// Turns keepalive on for `tcp` as configured; a socket that refuses is left as it is.
    pub(crate) fn apply_keepalive(&self, tcp: &tokio::net::TcpStream) {
        let Some(idle) = self.keepalive else { return };
        let idle = idle.max(Duration::from_secs(1));
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(5))
            .with_retries(3);
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "TCP keepalive could not be set");
        }
    }
}

/// A way to close a connection's socket with a reset (RST) rather than a FIN, for a connection
/// given up on: the kernel then drops what it still had to send instead of retransmitting it
/// until the network heals, when a command the caller was told may have run would run late,
/// after what the caller did next.
pub(crate) struct Reset {
    #[cfg(unix)]
    fd: Option<std::os::fd::OwnedFd>,
}

impl Reset {
    /// For `tcp`'s socket (a second handle to it, closed with the connection).
    pub(crate) fn of(tcp: &tokio::net::TcpStream) -> Reset {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            Reset {
                fd: tcp.as_fd().try_clone_to_owned().ok(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tcp;
            Reset {}
        }
    }

    /// Makes the socket's close a reset; the close itself comes when the stream and this are
    /// dropped.
    pub(crate) fn arm(&self) {
        #[cfg(unix)]
        if let Some(fd) = &self.fd {
            let _ = socket2::SockRef::from(fd).set_linger(Some(Duration::ZERO));
        }
    }
}

/// What the watchdog asks of the I/O task at a tick.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do.
    Fine,
    /// Write a `PING`.
    Probe,
    /// Nothing was read for this long, not even the probe's answer: close the connection.
    Dead(Duration),
}

/// What the I/O task owes, as the watchdog needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owing {
    /// Nothing outstanding.
    Nothing,
    /// Replies owed, none to a blocking command.
    Replies,
    /// A blocking command is outstanding: the server may be silent on purpose.
    Blocking,
}

/// The I/O task's health timer and what it saw at the last tick.
pub(crate) struct Watchdog {
    timeout: Duration,
    relaxed_timeout: Duration,
    idle_ping: Option<Duration>,
    sleep: Pin<Box<Sleep>>,
    // Armed for the idle interval: the first command re-arms it for `timeout`.
    idle_armed: bool,
    reads_at_tick: u64,
    owed_at_tick: bool,
    probe_out: bool,
    idle_since: Instant,
    relaxed_until: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for `liveness`, or none when its rule is off.
    pub(crate) fn new(liveness: &Liveness) -> Option<Watchdog> {
        let timeout = liveness.timeout?.max(Duration::from_millis(10));
        let now = Instant::now();
        Some(Watchdog {
            timeout,
            relaxed_timeout: liveness.relaxed_timeout.max(timeout),
            idle_ping: liveness.idle_ping.map(|d| d.max(Duration::from_millis(10))),
            sleep: Box::pin(tokio::time::sleep_until(after(now, timeout))),
            idle_armed: false,
            reads_at_tick: 0,
            owed_at_tick: false,
            probe_out: false,
            idle_since: now,
            relaxed_until: None,
        })
    }

    /// The bound in force now.
    fn period(&self, now: Instant) -> Duration {
        match self.relaxed_until {
            Some(until) if until > now => self.relaxed_timeout,
            _ => self.timeout,
        }
    }

    /// The connection was told of maintenance (`start`) or of its end.
    pub(crate) fn maintenance(&mut self, start: bool) {
        self.relaxed_until = start.then(|| after(Instant::now(), self.relaxed_timeout));
    }

    /// The probe asked for was not sent (an idle dedicated connection): nothing is awaited.
    pub(crate) fn cancel_probe(&mut self) {
        self.probe_out = false;
    }

    /// A request was queued for writing: an idle-length timer becomes a `timeout` one.
    pub(crate) fn on_request(&mut self) {
        if self.idle_armed {
            self.idle_armed = false;
            let now = Instant::now();
            self.owed_at_tick = false;
            let period = self.period(now);
            self.sleep.as_mut().reset(after(now, period));
        }
    }

    /// Waits for the next tick; then judges from `reads` (a count of successful reads) and what
    /// is owed, and arms the next tick.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        reads: u64,
        owing: impl FnOnce() -> Owing,
    ) -> Poll<Verdict> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        let owing = owing();
        let read = reads != self.reads_at_tick;
        self.reads_at_tick = reads;
        let owed_before = std::mem::replace(&mut self.owed_at_tick, owing == Owing::Replies);
        let period = self.period(now);
        let mut next = period;
        let verdict = if read || owing == Owing::Blocking {
            self.probe_out = false;
            self.idle_since = now;
            Verdict::Fine
        } else if self.probe_out {
            Verdict::Dead(period.saturating_mul(2))
        } else if owing == Owing::Replies && owed_before {
            self.probe_out = true;
            Verdict::Probe
        } else if owing == Owing::Nothing {
            match self.idle_ping {
                Some(every) if now.saturating_duration_since(self.idle_since) >= every => {
                    self.probe_out = true;
                    self.idle_since = now;
                    Verdict::Probe
                }
                Some(every) => {
                    // Sleep until the idle probe is due; the first command shortens it.
                    let due = every.saturating_sub(now.saturating_duration_since(self.idle_since));
                    next = due.max(period);
                    Verdict::Fine
                }
                None => Verdict::Fine,
            }
        } else {
            Verdict::Fine
        };
        self.idle_armed = next > period;
        self.sleep.as_mut().reset(after(now, next));
        Poll::Ready(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watchdog's verdict at its next tick (time is paused: the test moves it).
    async fn tick(w: &mut Watchdog, reads: u64, owing: Owing) -> Verdict {
        std::future::poll_fn(|cx| w.poll(cx, reads, || owing)).await
    }

    #[tokio::test(start_paused = true)]
    async fn silence_with_replies_owed_probes_then_declares_dead() {
        let mut w =
            Watchdog::new(&Liveness::default().with_timeout(Some(Duration::from_secs(1)))).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        // Owed now but not at the previous tick: not yet silent for a whole period.
        assert_eq!(tick(&mut w, 0, Owing::Replies).await, Verdict::Fine);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tick(&mut w, 0, Owing::Replies).await, Verdict::Probe);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            tick(&mut w, 0, Owing::Replies).await,
            Verdict::Dead(Duration::from_secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_or_a_blocking_command_keeps_the_connection_alive() {
        let mut w =
            Watchdog::new(&Liveness::default().with_timeout(Some(Duration::from_secs(1)))).unwrap();
        for reads in 1..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(tick(&mut w, reads, Owing::Replies).await, Verdict::Fine);
        }
        // Owed at the last tick and now, nothing read between: a whole period of silence.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tick(&mut w, 4, Owing::Replies).await, Verdict::Probe);
        // The probe's answer arrives.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tick(&mut w, 5, Owing::Nothing).await, Verdict::Fine);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(tick(&mut w, 5, Owing::Blocking).await, Verdict::Fine);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_probed_at_the_idle_interval() {
        let liveness = Liveness::default()
            .with_timeout(Some(Duration::from_secs(1)))
            .with_idle_ping(Some(Duration::from_secs(10)));
        let mut w = Watchdog::new(&liveness).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tick(&mut w, 0, Owing::Nothing).await, Verdict::Fine);
        // The timer now sleeps until the idle probe is due.
        assert!(w.idle_armed);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(tick(&mut w, 0, Owing::Nothing).await, Verdict::Probe);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            tick(&mut w, 0, Owing::Replies).await,
            Verdict::Dead(Duration::from_secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn maintenance_relaxes_the_bound() {
        let liveness = Liveness::default().with_timeout(Some(Duration::from_secs(1)));
        let mut w = Watchdog::new(&liveness).unwrap();
        w.maintenance(true);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tick(&mut w, 0, Owing::Replies).await, Verdict::Fine);
        // The next tick is a relaxed period away.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(tick(&mut w, 0, Owing::Replies).await, Verdict::Probe);
    }

    #[tokio::test]
    async fn off_means_no_watchdog() {
        assert!(Watchdog::new(&Liveness::off()).is_none());
        assert!(Watchdog::new(&Liveness::default().with_timeout(Some(Duration::MAX))).is_some());
    }
}
