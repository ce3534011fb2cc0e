//! The sequence trackers never accept a number twice; the outbox re-sends
//! exactly what the server did not process.

use std::collections::BTreeSet;

use bytes::Bytes;
use ferry_protocol::ChannelName;
use ferry_protocol::seq::{Disposition, InboundPublishes, PublishOutbox, ReceiveTracker, SeqGap};
use proptest::prelude::*;

use super::config;

/// Numbers around the tracker's position: behind, next, and ahead.
fn seq_stream() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(
        prop_oneof![3 => Just(None), 2 => (0..40u64).prop_map(Some)],
        0..120,
    )
    .prop_map(|picks| {
        // None means "the next one", so runs of accepted numbers happen.
        let mut next = 1;
        picks
            .into_iter()
            .map(|p| {
                let n = p.unwrap_or(next);
                if n == next {
                    next += 1;
                }
                n
            })
            .collect()
    })
}

/// Feeds `numbers` to a tracker; checks it accepts exactly 1, 2, 3, ...
/// once each, calls lower numbers duplicates and higher ones gaps.
fn check_tracker(
    numbers: &[u64],
    mut check: impl FnMut(u64) -> Result<Disposition, SeqGap>,
) -> Result<(), TestCaseError> {
    let mut accepted = BTreeSet::new();
    let mut expected_last = 0u64;
    for &n in numbers {
        let got = check(n);
        if n == expected_last + 1 {
            prop_assert_eq!(got, Ok(Disposition::Accept));
            prop_assert!(accepted.insert(n), "{n} accepted twice");
            expected_last = n;
        } else if n <= expected_last {
            prop_assert_eq!(got, Ok(Disposition::Duplicate));
        } else {
            prop_assert_eq!(
                got,
                Err(SeqGap {
                    expected: expected_last + 1,
                    got: n
                })
            );
        }
    }
    prop_assert_eq!(accepted, (1..=expected_last).collect::<BTreeSet<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn inbound_publishes_accept_each_client_seq_once(numbers in seq_stream()) {
        let mut t = InboundPublishes::default();
        let mut accepted = 0;
        check_tracker(
            &numbers,
            |n| {
                let d = t.check(n);
                if d == Ok(Disposition::Accept) {
                    accepted += 1;
                }
                d
            },
        )?;
        prop_assert_eq!(t.last(), accepted);
    }

    #[test]
    fn receive_tracker_accepts_each_seq_once(numbers in seq_stream()) {
        let mut r = ReceiveTracker::default();
        let mut accepted = 0;
        check_tracker(
            &numbers,
            |n| {
                let d = r.check(n);
                if d == Ok(Disposition::Accept) {
                    accepted += 1;
                }
                d
            },
        )?;
        prop_assert_eq!(r.last(), accepted);
        r.reset();
        prop_assert_eq!(r.check(1), Ok(Disposition::Accept));
    }

    #[test]
    fn inbound_publishes_started_after_n_accept_only_n_plus_1(
        start in 0..u64::MAX - 1,
        n in any::<u64>(),
    ) {
        let mut t = InboundPublishes::starting_after(start);
        let got = t.check(n);
        if n == start + 1 {
            prop_assert_eq!(got, Ok(Disposition::Accept));
            prop_assert_eq!(t.check(n), Ok(Disposition::Duplicate));
        } else if n <= start {
            prop_assert_eq!(got, Ok(Disposition::Duplicate));
        } else {
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn outbox_resends_exactly_what_follows_the_servers_last(
        count in 0..30u64,
        acked in 0..40u64,
        last_processed in 0..40u64,
    ) {
        let c = ChannelName::parse("c").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut o = PublishOutbox::default();
        for i in 1..=count {
            prop_assert_eq!(o.push(c.clone(), Bytes::from_static(b"abc")).client_seq, i);
        }
        o.acknowledge(acked);
        let again: Vec<u64> = o.resend_after(last_processed).map(|p| p.client_seq).collect();
        let from = acked.max(last_processed) + 1;
        prop_assert_eq!(&again, &(from..=count).collect::<Vec<_>>());
        prop_assert_eq!(o.pending_bytes(), 3 * again.len());
        // After a failed resume the rest is handed back, and numbering restarts.
        let uncertain: Vec<u64> = o.take_uncertain().into_iter().map(|p| p.client_seq).collect();
        prop_assert_eq!(uncertain, again);
        prop_assert!(o.is_empty());
        prop_assert_eq!(o.push(c, Bytes::new()).client_seq, 1);
    }
}
