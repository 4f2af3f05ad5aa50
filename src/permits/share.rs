//! Who gets the next permit: fulfilment and the platform gateway wait in two lines, and the
//! gateway's takes at most `gateway.share` of the permits while fulfilment's waits.

use std::collections::VecDeque;

use lapin::message::Delivery;
use tokio::sync::oneshot;

/// Who asks for a permit: fulfilment (commands, the sweep) or the platform gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taker {
    /// The worker's commands and the keeper's sweep.
    Fulfilment,
    /// A gateway call: at most `gateway.share` of the permits while fulfilment waits.
    Gateway,
}

/// One caller waiting for a permit.
pub(super) type Waiter = (Taker, oneshot::Sender<Delivery>);

/// The callers waiting, in two lines: while both hold someone, the gateway's line gets
/// `share` of the permits (a credit that grows by `share` a permit), fulfilment the rest, so
/// that a flood of gateway calls never starves fulfilment; a line alone gets every permit.
pub(super) struct Waiting {
    fulfilment: VecDeque<oneshot::Sender<Delivery>>,
    gateway: VecDeque<oneshot::Sender<Delivery>>,
    share: f64,
    credit: f64,
}

impl Waiting {
    pub(super) fn new(share: f64) -> Self {
        Self {
            fulfilment: VecDeque::new(),
            gateway: VecDeque::new(),
            share: share.clamp(0.0, 1.0),
            credit: 0.0,
        }
    }

    pub(super) fn push(&mut self, (taker, tx): Waiter) {
        match taker {
            Taker::Fulfilment => self.fulfilment.push_back(tx),
            Taker::Gateway => self.gateway.push_back(tx),
        }
    }

    /// The caller the next permit goes to; callers who gave up are skipped.
    pub(super) fn next(&mut self) -> Option<oneshot::Sender<Delivery>> {
        for line in [&mut self.fulfilment, &mut self.gateway] {
            while line.front().is_some_and(oneshot::Sender::is_closed) {
                line.pop_front();
            }
        }
        match (self.fulfilment.is_empty(), self.gateway.is_empty()) {
            (true, true) => None,
            (false, true) => self.fulfilment.pop_front(),
            (true, false) => self.gateway.pop_front(),
            (false, false) => {
                self.credit += self.share;
                if self.credit >= 1.0 {
                    self.credit -= 1.0;
                    self.gateway.pop_front()
                } else {
                    self.fulfilment.pop_front()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_both_wait_the_gateway_gets_its_share_and_alone_it_gets_all() {
        let mut waiting = Waiting::new(0.25);
        let mut keep = Vec::new();
        for _ in 0..8 {
            for taker in [Taker::Fulfilment, Taker::Gateway] {
                let (tx, rx) = oneshot::channel();
                keep.push(rx);
                waiting.push((taker, tx));
            }
        }
        for _ in 0..8 {
            drop(waiting.next().unwrap());
        }
        // Permits 4 and 8 went to the gateway: a quarter while both lines waited.
        assert_eq!((waiting.fulfilment.len(), waiting.gateway.len()), (2, 6));
        drop(waiting.next().unwrap());
        drop(waiting.next().unwrap());
        // Fulfilment's line is empty now: the gateway's takes every permit.
        assert_eq!((waiting.fulfilment.len(), waiting.gateway.len()), (0, 6));
        while waiting.next().is_some() {}
        assert!(waiting.gateway.is_empty());
    }

    #[test]
    fn a_caller_who_gave_up_is_skipped() {
        let mut waiting = Waiting::new(1.0);
        let (gone, rx) = oneshot::channel();
        drop(rx);
        waiting.push((Taker::Gateway, gone));
        assert!(waiting.next().is_none());
    }
}
