//! Who gets a connection on the API port, and for how long.
//!
//! Owns the three bounds a connection meets, in order:
//! 1. [`Handshakes`]: connections not yet established (from `accept` to a finished TLS handshake
//!    and a free connection slot) are at most `server.max_handshakes`; each has
//!    `server.tls_handshake_timeout_ms`. When full, a new connection is never kept waiting:
//!    the oldest *silent* one (no byte received yet) is closed to make room, else the oldest
//!    still in its handshake. Issue #31 item 8: the accept loop used to take one of
//!    `max_connections` permits *before* accepting, so 1,100 silent TCP connections held every
//!    permit for a whole handshake timeout and agencies waited 9-10 s in the kernel's queue.
//!    Now a silent socket costs a file descriptor and a parked task, and displaces only other
//!    silent sockets.
//! 2. `server.max_connections` (a semaphore in `serve`): established connections. One that
//!    finds it full waits for a slot up to `header_read_timeout_ms` (still counted in 1), then is
//!    closed.
//! 3. [`AgencySlots`]: per agency, `max_connections_per_agency`; certificates naming no agency
//!    share [`UNKNOWN_AGENCY_SLOTS`].
//!
//! Then [`Lifetime`]: every established connection is closed gracefully (in-flight requests
//! finish, HTTP/2 gets GOAWAY, HTTP/1.1 `Connection: close`) after `server.max_connection_age_ms`,
//! and at once when a reload's verifier no longer accepts its client certificate (a revocation
//! list put in force at SIGHUP). Issue #31 item 5: kept-alive connections used to outlive a
//! revocation for ever.
//!
//! Not done: per source address limits. Agencies may reach the gateway through one NAT or
//! proxy address, and the silent-first eviction already keeps a flood from one address off the
//! others' handshakes. A client that trickles a ClientHello byte by byte still holds a place for
//! at most the handshake timeout, and is evicted before established connections are touched
//! (they are never evicted).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{oneshot, watch};

use crate::identity::tls::AgencyVerifier;
use crate::telemetry::events;

/// Connections not yet established, oldest first; silent ones apart.
pub(super) struct Handshakes {
    max: usize,
    inner: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    next: u64,
    silent: BTreeMap<u64, Evict>,
    speaking: BTreeMap<u64, Evict>,
}

struct Evict {
    peer: SocketAddr,
    tx: oneshot::Sender<()>,
}

/// One connection's place among the handshakes; given back when dropped.
pub(super) struct Ticket {
    set: Arc<Handshakes>,
    id: u64,
}

/// Fires when the connection is evicted to make room.
pub(super) type Evicted = oneshot::Receiver<()>;

impl Handshakes {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            inner: Mutex::default(),
        })
    }

    /// A place for a just-accepted connection, evicting the oldest silent one (else the oldest
    /// one) when the set is full.
    pub(super) fn admit(self: &Arc<Self>, peer: SocketAddr) -> (Ticket, Evicted) {
        let (tx, evicted) = oneshot::channel();
        let mut p = self.lock();
        while p.silent.len() + p.speaking.len() >= self.max {
            let (victim, silent) = match p.silent.pop_first() {
                Some((_, v)) => (v, true),
                None => match p.speaking.pop_first() {
                    Some((_, v)) => (v, false),
                    None => break,
                },
            };
            events::handshake_evicted(victim.peer, silent);
            let _ = victim.tx.send(());
        }
        let id = p.next;
        p.next += 1;
        p.silent.insert(id, Evict { peer, tx });
        (
            Ticket {
                set: self.clone(),
                id,
            },
            evicted,
        )
    }

    /// Connections in the set now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let p = self.lock();
        p.silent.len() + p.speaking.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ticket {
    /// The client has sent its first bytes: evicted only after every silent connection.
    pub(super) fn speaking(&self) {
        let mut p = self.set.lock();
        if let Some(e) = p.silent.remove(&self.id) {
            p.speaking.insert(self.id, e);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut p = self.set.lock();
        if p.silent.remove(&self.id).is_none() {
            p.speaking.remove(&self.id);
        }
    }
}

/// Slots shared by the certificates that name no agency.
pub(super) const UNKNOWN_AGENCY_SLOTS: usize = 8;

/// Open connections per agency, so that no agency takes every slot.
pub(super) struct AgencySlots {
    per_agency: usize,
    unknown: usize,
    open: Mutex<std::collections::HashMap<Option<String>, usize>>,
}

/// One connection's slot, given back when the connection ends.
pub(super) struct Slot {
    slots: Arc<AgencySlots>,
    who: Option<String>,
}

impl AgencySlots {
    pub(super) fn new(per_agency: usize, unknown: usize) -> Self {
        Self {
            per_agency,
            unknown,
            open: Default::default(),
        }
    }

    pub(super) fn take(self: &Arc<Self>, who: Option<&str>) -> Option<Slot> {
        let limit = if who.is_some() {
            self.per_agency
        } else {
            self.unknown
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(who.map(String::from)).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            who: who.map(String::from),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.who) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Why an established connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// The gateway is stopping.
    Shutdown,
    /// Open longer than `server.max_connection_age_ms`.
    MaxAge,
    /// A reload's verifier no longer accepts the client certificate.
    NoLongerTrusted,
}

impl Close {
    pub(super) fn why(self) -> &'static str {
        match self {
            Close::Shutdown => "shutdown",
            Close::MaxAge => "max_age",
            Close::NoLongerTrusted => "certificate_no_longer_trusted",
        }
    }
}

/// What ends an established connection other than its client: the stop signal, its maximum
/// age, a reload that no longer trusts its certificate.
pub(super) struct Lifetime {
    pub(super) stop: watch::Receiver<bool>,
    pub(super) max_age: Duration,
    pub(super) verifiers: watch::Receiver<Arc<AgencyVerifier>>,
    pub(super) chain: Vec<CertificateDer<'static>>,
}

impl Lifetime {
    /// Resolves when the connection must be closed, and why. The certificate is checked against
    /// every verifier a reload puts in force (with the system clock, as rustls' handshakes are).
    pub(super) async fn ends(mut self) -> Close {
        let age = tokio::time::sleep(self.max_age);
        tokio::pin!(age);
        let mut reloads_open = true;
        loop {
            tokio::select! {
                changed = self.stop.changed() => {
                    if changed.is_err() || *self.stop.borrow() {
                        return Close::Shutdown;
                    }
                }
                _ = &mut age => return Close::MaxAge,
                changed = self.verifiers.changed(), if reloads_open => {
                    if changed.is_err() {
                        reloads_open = false;
                        continue;
                    }
                    let verifier = self.verifiers.borrow_and_update().clone();
                    if !verifier.still_trusts(&self.chain, UnixTime::now()) {
                        return Close::NoLongerTrusted;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_full_set_evicts_the_oldest_silent_connection_first() {
        let set = Handshakes::new(3);
        let (a, mut a_out) = set.admit(peer(1));
        let (b, _b_out) = set.admit(peer(2));
        let (_c, mut c_out) = set.admit(peer(3));
        // a and b have spoken; c is silent though newer.
        a.speaking();
        b.speaking();
        let (d, mut d_out) = set.admit(peer(4));
        assert_eq!(c_out.try_recv(), Ok(()), "the silent one goes first");
        assert!(a_out.try_recv().is_err());
        assert_eq!(set.len(), 3);
        // d is the only silent one: it goes next.
        let (e, mut e_out) = set.admit(peer(5));
        assert_eq!(d_out.try_recv(), Ok(()));
        d.speaking(); // too late: already out of the set, nothing changes
        e.speaking();
        // Every one has spoken: the oldest goes.
        let _f = set.admit(peer(6));
        assert_eq!(a_out.try_recv(), Ok(()), "then the oldest speaking one");
        assert!(e_out.try_recv().is_err());
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_ticket_dropped_frees_its_place() {
        let set = Handshakes::new(2);
        let (a, _a_out) = set.admit(peer(1));
        let (_b, mut b_out) = set.admit(peer(2));
        drop(a);
        let _c = set.admit(peer(3));
        assert!(b_out.try_recv().is_err(), "room was made by the drop");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn agency_slots_are_counted_per_agency() {
        let slots = Arc::new(AgencySlots::new(2, 1));
        let a = slots.take(Some("tax"));
        let _b = slots.take(Some("tax"));
        assert!(slots.take(Some("tax")).is_none());
        assert!(slots.take(Some("court")).is_some());
        let _u = slots.take(None);
        assert!(slots.take(None).is_none());
        drop(a);
        assert!(slots.take(Some("tax")).is_some());
    }
}
