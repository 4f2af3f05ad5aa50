use super::*;
use crate::ids::AppId;
use crate::metrics::Label;

fn keyring(list: &[(&str, &str)]) -> Keyring {
    let toml: String = list
        .iter()
        .map(|(appid, secret)| {
            format!(
                "[[merchants]]\nappid = \"{appid}\"\nsign_key = \"sign-key-0123456789\"\nclient_id = \"772915\"\nclient_secret = \"{secret}\"\nuid = \"1404376560\"\n"
            )
        })
        .collect();
    Keyring::derive(
        &crate::settings::Settings::from_toml(&toml)
            .unwrap()
            .merchants,
    )
}

const WINDOW: Window = Window {
    max_age: Duration::from_secs(2),
    max_ahead: Duration::from_secs(1),
};

#[test]
fn a_stamp_verifies_only_for_its_kind_context_and_keys_and_within_its_window() {
    let ring = keyring(&[
        ("300069", "client-secret-0123456789"),
        ("100023", "other-secret-0123456789"),
    ]);
    let stamper = Stamper::new(&ring, "p1", "q.keeper").unwrap();
    let verifier = Verifier::new(ring.clone(), "q.keeper");
    let stamp = stamper.stamp_at(Kind::Ping, 10_000);
    // Sealed with the smallest appid's key, and named so.
    assert_eq!(stamp.appid.as_str(), "100023");
    assert_eq!(stamp.counter, 1);
    assert_eq!(stamper.stamp_at(Kind::Ping, 10_000).counter, 2);
    assert_eq!(verifier.check(Kind::Ping, &stamp, WINDOW, 10_500), Ok(()));
    // Another kind, another queue, other keys.
    assert_eq!(
        verifier.check(Kind::Hello, &stamp, WINDOW, 10_500),
        Err(Rejected::Forged)
    );
    assert_eq!(
        Verifier::new(ring.clone(), "other.keeper").check(Kind::Ping, &stamp, WINDOW, 10_500),
        Err(Rejected::Forged)
    );
    let strangers = keyring(&[("100023", "somebody-else-0123456789")]);
    assert_eq!(
        Verifier::new(strangers, "q.keeper").check(Kind::Ping, &stamp, WINDOW, 10_500),
        Err(Rejected::Forged)
    );
    // Any field changed: the MAC no longer matches.
    for altered in [
        Stamp {
            counter: 99,
            ..stamp.clone()
        },
        Stamp {
            at_ms: 10_400,
            ..stamp.clone()
        },
        Stamp {
            sender: "p2".into(),
            ..stamp.clone()
        },
        Stamp {
            appid: AppId::parse("300069").unwrap(),
            ..stamp.clone()
        },
        Stamp {
            appid: AppId::parse("999999").unwrap(),
            ..stamp.clone()
        },
        Stamp {
            mac: "not hex".into(),
            ..stamp.clone()
        },
        Stamp {
            mac: stamp.mac[..62].into(),
            ..stamp.clone()
        },
    ] {
        assert_eq!(
            verifier.check(Kind::Ping, &altered, WINDOW, 10_500),
            Err(Rejected::Forged),
            "{altered:?}"
        );
    }
    // Genuine but too old, or too far ahead; the bounds themselves pass.
    assert_eq!(verifier.check(Kind::Ping, &stamp, WINDOW, 12_000), Ok(()));
    assert_eq!(
        verifier.check(Kind::Ping, &stamp, WINDOW, 12_001),
        Err(Rejected::Stale)
    );
    assert_eq!(verifier.check(Kind::Ping, &stamp, WINDOW, 9_000), Ok(()));
    assert_eq!(
        verifier.check(Kind::Ping, &stamp, WINDOW, 8_999),
        Err(Rejected::Stale)
    );
    // Clocks at their extremes never overflow.
    let far = stamper.stamp_at(Kind::Ping, u64::MAX);
    assert_eq!(
        verifier.check(Kind::Ping, &far, WINDOW, 0),
        Err(Rejected::Stale)
    );
    assert_eq!(
        verifier.check(Kind::Ping, &stamp, WINDOW, u64::MAX),
        Err(Rejected::Stale)
    );
}

#[test]
fn no_merchant_no_stamper() {
    assert!(Stamper::new(&Keyring::default(), "p", "q").is_err());
}

#[test]
fn a_sequence_takes_each_senders_counters_once_in_order_and_stays_bounded() {
    let ring = keyring(&[("100023", "client-secret-0123456789")]);
    let a = Stamper::new(&ring, "a", "q").unwrap();
    let b = Stamper::new(&ring, "b", "q").unwrap();
    let mut seq = Sequence::new(2);
    let (a1, a2) = (a.stamp(Kind::Ping), a.stamp(Kind::Ping));
    assert!(seq.advance(&a1));
    assert!(!seq.advance(&a1), "a copy");
    assert!(seq.advance(&a2));
    assert!(!seq.advance(&a1), "an older one");
    let b1 = b.stamp(Kind::Ping);
    assert!(seq.advance(&b1));
    // A third sender pushes out the one heard from longest ago (a); a's old stamps are then
    // taken again, which the age window bounds.
    let c = Stamper::new(&ring, "c", "q").unwrap();
    assert!(seq.advance(&c.stamp(Kind::Ping)));
    assert_eq!(seq.last.len(), 2);
    assert!(!seq.advance(&b1));
    assert!(seq.advance(&a2));
}

#[test]
fn seen_takes_each_stamp_once_forgets_it_after_its_retention_and_stays_bounded() {
    let ring = keyring(&[("100023", "client-secret-0123456789")]);
    let s = Stamper::new(&ring, "s", "q").unwrap();
    let mut seen = Seen::new(Duration::from_millis(1000), 3);
    let (p1, p2, p3) = (
        s.stamp_at(Kind::Permit, 1000),
        s.stamp_at(Kind::Permit, 1100),
        s.stamp_at(Kind::Permit, 1200),
    );
    // Out of order is fine, a repeat is not.
    assert!(seen.first(&p2, 1300));
    assert!(seen.first(&p1, 1300));
    assert!(!seen.first(&p2, 1300));
    assert!(seen.first(&p3, 1300));
    assert_eq!(seen.len(), 3);
    // Full: the oldest goes first.
    let p4 = s.stamp_at(Kind::Permit, 1300);
    assert!(seen.first(&p4, 1300));
    assert_eq!(seen.len(), 3);
    // Past the retention everything is forgotten (and by then the age check refuses it).
    assert!(seen.first(&p3, 5000));
    assert_eq!(seen.len(), 1);
    assert!(!seen.is_empty());
}

#[test]
fn rejection_labels_are_snake_case() {
    let labels: Vec<&str> = Rejected::all().map(Rejected::as_str).collect();
    assert_eq!(labels, ["forged", "stale", "repeated"]);
}
