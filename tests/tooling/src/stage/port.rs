//! Ports a relay must be told before it binds them (its public base, a redirect URI, an
//! address that is down until the relay starts).

use std::net::TcpListener;
use std::ops::RangeInclusive;

/// The kernel's range for outgoing connections' local ports, as Linux ships it.
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32768..=60999;

/// A port free now and outside the kernel's ephemeral range: a port bound with 0 and
/// released comes from that range, where any test's outgoing connection (to the broker,
/// the database, the sandbox) may take it before the relay binds it. Outside it, only
/// another caller of this function can, one in thousands of draws.
pub fn spare_port() -> u16 {
    let ephemeral = ephemeral_range();
    for _ in 0..200 {
        let port = rand::random_range(10_000..=65_000u16);
        if ephemeral.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // A machine with every spare port taken: the kernel's choice is the fallback.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// This machine's ephemeral range, or Linux's default where it cannot be read.
fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut ends = text.split_whitespace().map(str::parse::<u16>);
            Some(ends.next()?.ok()?..=ends.next()?.ok()?)
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_ports_are_bindable_and_outside_the_ephemeral_range() {
        for _ in 0..50 {
            let port = spare_port();
            assert!(!ephemeral_range().contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
