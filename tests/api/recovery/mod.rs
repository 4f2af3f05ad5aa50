//! Nothing unrecoverable: order states no push brought are reconciled from the order list, the
//! event log keeps every event, and any part of it can be replayed.

mod operator;
mod reconcile;
mod stream;
mod support;
