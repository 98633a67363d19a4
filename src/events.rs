//! The event bus: handlers publish [`Event`]s; each enabled plugin gets them on its own
//! bounded crossbeam channel and handles them on its own thread. Publishing never blocks and
//! never fails a request: a full channel drops the event and counts the drop.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::claude::{Denial, Tokens};

/// Something worth telling a plugin about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ServerStarted {
        addr: String,
    },
    ServerStopping,
    TaskStarted {
        key_id: String,
        session_id: String,
        route: String,
        model: String,
    },
    /// A run ended: `outcome` is the audit message ("task completed", "task failed",
    /// "task timed out", "task cancelled", ...).
    TaskFinished {
        key_id: String,
        session_id: String,
        route: String,
        model: String,
        outcome: String,
        success: bool,
        duration_ms: u64,
        tokens: Option<Tokens>,
        cost_usd: Option<f64>,
        /// The first part of the answer (or of the error), at most 500 characters.
        excerpt: String,
    },
    SessionStarted {
        key_id: String,
        session_id: String,
        model: String,
    },
    SessionDeleted {
        key_id: String,
        session_id: String,
    },
    PermissionDenied {
        key_id: String,
        session_id: String,
        denials: Vec<Denial>,
    },
    ApprovalGranted {
        key_id: String,
        session_id: String,
        tool_use_ids: Vec<String>,
    },
    ApprovalDenied {
        key_id: String,
        session_id: String,
    },
}

/// Per-plugin queues. Cloning an `Arc<Bus>` is how handlers reach it.
#[derive(Default)]
pub struct Bus {
    subscribers: Mutex<Vec<(String, Sender<Event>)>>,
    dropped: AtomicU64,
}

impl Bus {
    /// A queue of `capacity` events for the plugin `name`.
    pub fn subscribe(&self, name: &str, capacity: usize) -> Receiver<Event> {
        let (tx, rx) = bounded(capacity);
        self.subscribers.lock().push((name.to_string(), tx));
        rx
    }

    /// Offers `event` to every subscriber without waiting.
    pub fn publish(&self, event: Event) {
        for (name, tx) in self.subscribers.lock().iter() {
            match tx.try_send(event.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    log::warn!("plugin {name} is behind: dropped an event ({n} dropped so far)");
                }
            }
        }
    }

    /// Events dropped because a plugin's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let bus = Bus::default();
        let rx = bus.subscribe("slow", 1);
        bus.publish(Event::ServerStopping);
        bus.publish(Event::ServerStopping);
        assert_eq!(bus.dropped(), 1);
        assert_eq!(rx.try_recv().unwrap(), Event::ServerStopping);
    }
}
