//! In-memory tests of the session state machine with simulated time.

use super::*;
use crate::frame::WelcomeOutcome;

const HB: Duration = Duration::from_secs(10);

fn chan(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

fn welcome(outcome: WelcomeOutcome, id: u8, last_client_seq: u64) -> Frame {
    Frame::Welcome(Welcome {
        session_id: SessionId([id; 16]),
        resume_secret: ResumeSecret([id; 32]),
        outcome,
        heartbeat_interval_ms: HB.as_millis() as u64,
        resume_window_ms: 60_000,
        max_frame_size: 1024,
        max_subscriptions: 16,
        last_client_seq,
    })
}

fn message(seq: u64) -> Frame {
    Frame::Message {
        seq,
        channel: chan("c"),
        channel_offset: seq + 100,
        payload: Bytes::from(format!("m{seq}")),
    }
}

/// A session with simulated time.
struct Harness {
    s: Session,
    now: Instant,
}

impl Harness {
    fn new(ack_every: u32) -> Self {
        Self {
            s: Session::new(SessionConfig {
                ack_every,
                ..SessionConfig::default()
            }),
            now: Instant::now(),
        }
    }

    /// HELLO → WELCOME(New) with session id 1.
    fn connected(ack_every: u32) -> Self {
        let mut h = Self::new(ack_every);
        h.s.start_handshake("tok".into(), h.now);
        h.feed(welcome(WelcomeOutcome::New, 1, 0));
        h.sent();
        h.outputs();
        h
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn feed(&mut self, f: Frame) {
        self.s.handle_frame(f, self.now).unwrap();
    }

    fn sent(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.s.poll_transmit(self.now)).collect()
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn publish(&mut self, payload: &'static str) -> u64 {
        self.s
            .publish(chan("c"), Bytes::from_static(payload.as_bytes()))
            .unwrap()
    }

    /// Drops the transport (its Disconnected event is taken) and starts a
    /// new handshake; returns the HELLO.
    fn reconnect(&mut self) -> Hello {
        self.s.transport_lost("test");
        assert!(matches!(
            self.events().as_slice(),
            [Event::Disconnected { .. }]
        ));
        self.s.start_handshake("tok2".into(), self.now);
        match self.sent().as_slice() {
            [Frame::Hello(h)] => h.clone(),
            other => panic!("expected HELLO only, got {other:?}"),
        }
    }
}

fn publish_seqs(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Publish { client_seq, .. } => Some(*client_seq),
            _ => None,
        })
        .collect()
}

fn acks(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Ack { seq } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn first_handshake_sends_hello_without_resume_and_reports_connected() {
    let mut h = Harness::new(32);
    h.s.start_handshake("tok".into(), h.now);
    assert_eq!(
        h.sent(),
        vec![Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: "tok".into(),
            resume: None
        })]
    );
    assert!(!h.s.is_active());
    h.feed(welcome(WelcomeOutcome::New, 1, 0));
    assert!(h.s.is_active());
    assert_eq!(h.s.session_id(), Some(SessionId([1; 16])));
    assert_eq!(
        h.events(),
        vec![Event::Connected {
            outcome: WelcomeOutcome::New,
            session_id: SessionId([1; 16])
        }]
    );
    assert_eq!(h.s.epoch(), 1);
    assert_eq!(h.s.stats(), ClientStats::default());
}

#[test]
fn frames_out_of_place_are_the_servers_fault() {
    let mut h = Harness::new(32);
    h.s.start_handshake(String::new(), h.now);
    assert!(matches!(
        h.s.handle_frame(message(1), h.now),
        Err(SessionError::ServerMisbehaved(_))
    ));
    let mut h = Harness::connected(32);
    assert!(matches!(
        h.s.handle_frame(welcome(WelcomeOutcome::New, 1, 0), h.now),
        Err(SessionError::ServerMisbehaved(_))
    ));
    assert!(matches!(
        h.s.handle_frame(Frame::Ack { seq: 1 }, h.now),
        Err(SessionError::ServerMisbehaved(_))
    ));
    assert!(matches!(
        h.s.handle_frame(Frame::PubAck { client_seq: 1 }, h.now),
        Err(SessionError::ServerMisbehaved(_))
    ));
    // A resumed WELCOME the client did not ask for.
    let mut h = Harness::new(32);
    h.s.start_handshake(String::new(), h.now);
    assert!(
        h.s.handle_frame(welcome(WelcomeOutcome::Resumed, 1, 0), h.now)
            .is_err()
    );
}

#[test]
fn acks_every_n_messages_and_when_reading_goes_idle() {
    let mut h = Harness::connected(3);
    for seq in 1..=7 {
        h.feed(message(seq));
    }
    assert_eq!(acks(&h.sent()), vec![3, 6]);
    h.s.read_idle();
    assert_eq!(acks(&h.sent()), vec![7]);
    h.s.read_idle();
    assert!(h.sent().is_empty(), "nothing new to acknowledge");
    let delivered: Vec<u64> = h
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Message(d) => d.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(delivered, (1..=7).collect::<Vec<_>>());
    assert_eq!(h.s.stats().messages_received, 7);
    assert_eq!(h.s.stats().last_received_seq, 7);
}

#[test]
fn duplicates_are_dropped_and_a_gap_is_an_error() {
    let mut h = Harness::connected(32);
    h.feed(message(1));
    h.feed(message(2));
    h.feed(message(2));
    h.feed(message(1));
    assert_eq!(h.events().len(), 2);
    assert_eq!(h.s.stats().duplicates_dropped, 2);
    assert!(matches!(
        h.s.handle_frame(message(4), h.now),
        Err(SessionError::ServerMisbehaved(_))
    ));
}

#[test]
fn resume_carries_last_seq_and_resends_only_after_last_client_seq() {
    let mut h = Harness::connected(32);
    for seq in 1..=5 {
        h.feed(message(seq));
    }
    assert_eq!(h.publish("a"), 1);
    assert_eq!(h.publish("b"), 2);
    assert_eq!(h.publish("c"), 3);
    assert_eq!(publish_seqs(&h.sent()), vec![1, 2, 3]);
    h.feed(Frame::PubAck { client_seq: 1 });
    h.outputs();

    h.s.transport_lost("reset");
    assert_eq!(
        h.events(),
        vec![Event::Disconnected {
            reason: "reset".into()
        }]
    );
    // Held while detached, sent after WELCOME.
    assert_eq!(h.publish("d"), 4);
    assert!(h.sent().is_empty());

    h.s.start_handshake("tok2".into(), h.now);
    let hello = match h.sent().as_slice() {
        [Frame::Hello(hello)] => hello.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hello.token, "tok2");
    let resume = hello.resume.expect("resume request");
    assert_eq!(resume.session_id, SessionId([1; 16]));
    assert_eq!(resume.secret, ResumeSecret([1; 32]));
    assert_eq!(resume.last_received_seq, 5);

    // The server had processed up to 2 before the transport died.
    h.feed(welcome(WelcomeOutcome::Resumed, 1, 2));
    assert_eq!(publish_seqs(&h.sent()), vec![3, 4]);
    assert_eq!(
        h.events(),
        vec![Event::Connected {
            outcome: WelcomeOutcome::Resumed,
            session_id: SessionId([1; 16])
        }]
    );
    // Replay from last_received_seq + 1, with an overlap.
    h.feed(message(5));
    h.feed(message(6));
    assert_eq!(h.events().len(), 1);
    let st = h.s.stats();
    assert_eq!((st.reconnects, st.resumes_ok, st.resumes_failed), (1, 1, 0));
    assert_eq!((st.duplicates_dropped, st.publishes_acked), (1, 2));
    assert_eq!(h.s.epoch(), 1);
    assert_eq!(h.s.publish_acked(), 2);
    h.feed(Frame::PubAck { client_seq: 4 });
    assert_eq!(h.s.stats().publishes_acked, 4);
}

#[test]
fn resume_rejects_a_last_client_seq_beyond_what_was_published() {
    let mut h = Harness::connected(32);
    h.publish("a");
    h.reconnect();
    assert!(
        h.s.handle_frame(welcome(WelcomeOutcome::Resumed, 1, 5), h.now)
            .is_err()
    );
}

#[test]
fn a_new_session_hands_back_publishes_and_resubscribes() {
    let mut h = Harness::connected(32);
    let a = h.s.subscribe(chan("a")).unwrap();
    let b = h.s.subscribe(chan("b")).unwrap();
    h.feed(Frame::Subscribed {
        request_id: a,
        channel_offset: 1,
    });
    h.feed(Frame::Subscribed {
        request_id: b,
        channel_offset: 2,
    });
    let pending_c = h.s.subscribe(chan("cc")).unwrap();
    let pending_unsub_b = h.s.unsubscribe(chan("b")).unwrap();
    h.publish("x");
    h.publish("y");
    h.feed(message(1));
    h.sent();
    h.outputs();

    let hello = h.reconnect();
    assert_eq!(hello.resume.map(|r| r.last_received_seq), Some(1));
    h.feed(welcome(WelcomeOutcome::NewSessionExpired, 2, 0));

    let out = h.outputs();
    assert!(matches!(
        out[0],
        Output::Event(Event::Connected {
            outcome: WelcomeOutcome::NewSessionExpired,
            ..
        })
    ));
    let Output::Event(Event::SessionLost {
        uncertain_publishes,
    }) = &out[1]
    else {
        panic!("{out:?}");
    };
    let seqs: Vec<u64> = uncertain_publishes.iter().map(|p| p.client_seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert!(out.contains(&Output::RequestDone {
        request_id: pending_unsub_b,
        result: Ok(0)
    }));

    // No publish is re-sent; "a" (confirmed) and "cc" (pending) are
    // subscribed again, "b" (being left) is not.
    let sent = h.sent();
    assert!(publish_seqs(&sent).is_empty());
    let mut subs: Vec<(u64, String)> = sent
        .iter()
        .map(|f| match f {
            Frame::Subscribe {
                request_id,
                channel,
            } => (*request_id, channel.to_string()),
            other => panic!("{other:?}"),
        })
        .collect();
    subs.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(subs[0].1, "a");
    assert_eq!(subs[1], (pending_c, "cc".to_string()));
    assert_eq!(subs.len(), 2);
    assert_eq!(h.s.subscriptions().count(), 0, "nothing confirmed yet");

    // The new session numbers from 1 again, both ways.
    h.feed(message(1));
    assert_eq!(h.publish("z"), 1);
    assert_eq!(h.s.epoch(), 2);
    let st = h.s.stats();
    assert_eq!((st.reconnects, st.resumes_ok, st.resumes_failed), (1, 0, 1));
    h.feed(Frame::Subscribed {
        request_id: subs[0].0,
        channel_offset: 9,
    });
    assert_eq!(
        h.s.subscriptions()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
}

#[test]
fn requests_complete_on_answers_and_errors() {
    let mut h = Harness::connected(32);
    let ok = h.s.subscribe(chan("ok")).unwrap();
    let denied = h.s.subscribe(chan("denied")).unwrap();
    assert_eq!(
        h.sent(),
        vec![
            Frame::Subscribe {
                request_id: ok,
                channel: chan("ok")
            },
            Frame::Subscribe {
                request_id: denied,
                channel: chan("denied")
            }
        ]
    );
    h.feed(Frame::Subscribed {
        request_id: ok,
        channel_offset: 42,
    });
    h.feed(Frame::error(ErrorCode::ForbiddenSubscribe, denied, "no"));
    let out = h.outputs();
    assert_eq!(
        out,
        vec![
            Output::RequestDone {
                request_id: ok,
                result: Ok(42)
            },
            Output::Event(Event::ServerError {
                code: 405,
                reference: denied,
                message: "no".into()
            }),
            Output::RequestDone {
                request_id: denied,
                result: Err(Rejection {
                    code: 405,
                    message: "no".into()
                })
            },
        ]
    );
    // A refused publish names a client_seq that may equal a request id.
    let pending = h.s.subscribe(chan("p")).unwrap();
    h.feed(Frame::error(ErrorCode::ForbiddenPublish, pending, "no"));
    assert_eq!(h.outputs().len(), 1, "only the ServerError event");
    let unsub = h.s.unsubscribe(chan("ok")).unwrap();
    h.feed(Frame::Unsubscribed { request_id: unsub });
    assert!(h.outputs().contains(&Output::RequestDone {
        request_id: unsub,
        result: Ok(0)
    }));
    assert_eq!(h.s.subscriptions().count(), 0);
}

#[test]
fn requests_pending_across_a_resume_are_sent_again() {
    let mut h = Harness::connected(32);
    let unsub = h.s.unsubscribe(chan("a")).unwrap();
    h.reconnect();
    let sub = h.s.subscribe(chan("b")).unwrap();
    h.feed(welcome(WelcomeOutcome::Resumed, 1, 0));
    assert_eq!(
        h.sent(),
        vec![
            Frame::Unsubscribe {
                request_id: unsub,
                channel: chan("a")
            },
            Frame::Subscribe {
                request_id: sub,
                channel: chan("b")
            }
        ]
    );
    h.outputs();
    // The first UNSUBSCRIBE was processed: "not subscribed" now means done.
    h.feed(Frame::error(
        ErrorCode::NotSubscribed,
        unsub,
        "not subscribed",
    ));
    assert!(h.outputs().contains(&Output::RequestDone {
        request_id: unsub,
        result: Ok(0)
    }));
}

#[test]
fn fatal_errors_stop_reconnecting_only_when_retrying_cannot_help() {
    for (code, fatal, terminal) in [
        (100, true, true),
        (104, true, true),
        (105, true, false),
        (107, true, false),
        (199, true, true),
        (300, true, false),
        (303, true, true),
        (400, true, true),
        (402, true, true),
        (408, true, true),
        (409, true, false),
        (499, true, false),
        (500, true, false),
        (502, true, false),
        (503, true, true),
        (250, false, false),
        (405, false, false),
        (406, false, false),
    ] {
        assert_eq!(is_fatal(code), fatal, "{code}");
        if fatal {
            assert_eq!(is_terminal(code), terminal, "{code}");
        }
    }
    let mut h = Harness::connected(32);
    h.feed(Frame::error(ErrorCode::TokenExpired, 0, "expired"));
    let out = h.outputs();
    assert!(matches!(
        out[0],
        Output::Event(Event::ServerError { code: 402, .. })
    ));
    assert!(matches!(
        out[1],
        Output::Fatal {
            code: 402,
            terminal: true,
            ..
        }
    ));
    assert!(h.s.is_closed());
    assert!(matches!(
        h.s.publish(chan("c"), Bytes::new()),
        Err(ClientError::Closed)
    ));
    let mut h = Harness::connected(32);
    h.feed(Frame::error(ErrorCode::SlowConsumer, 0, "slow"));
    assert!(matches!(
        h.outputs()[1],
        Output::Fatal {
            terminal: false,
            ..
        }
    ));
    assert!(!h.s.is_closed());
}

#[test]
fn goaway_and_token_refresh_become_driver_actions() {
    let mut h = Harness::connected(32);
    h.feed(Frame::RefreshToken { deadline_ms: 500 });
    assert_eq!(
        h.outputs(),
        vec![Output::TokenRequested {
            deadline: Duration::from_millis(500)
        }]
    );
    h.s.send_token("fresh".into());
    assert_eq!(
        h.sent(),
        vec![Frame::Token {
            token: "fresh".into()
        }]
    );
    h.feed(Frame::GoAway {
        code: 502,
        reconnect_after_ms: 250,
        message: "upgrade".into(),
    });
    assert_eq!(
        h.outputs(),
        vec![
            Output::Event(Event::GoAway {
                code: 502,
                reconnect_after_ms: 250
            }),
            Output::GoAway {
                reconnect_after: Duration::from_millis(250)
            }
        ]
    );
}

#[test]
fn heartbeat_pings_when_idle_and_reports_a_silent_server() {
    let mut h = Harness::connected(32);
    assert_eq!(h.s.poll_timeout(), Some(h.now + HB));
    h.advance(HB);
    h.s.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), vec![Frame::Ping { nonce: 1 }]);
    h.feed(Frame::Pong { nonce: 1 });
    // Server PING is answered.
    h.feed(Frame::Ping { nonce: 77 });
    assert_eq!(h.sent(), vec![Frame::Pong { nonce: 77 }]);
    let heard = h.now;
    // No answer any more: probe at +1 interval, give up at +2.5.
    h.advance(HB);
    h.s.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), vec![Frame::Ping { nonce: 2 }]);
    let deadline = h.s.poll_timeout().unwrap();
    assert_eq!(deadline, heard + HB * 2);
    h.advance(HB);
    h.s.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), vec![Frame::Ping { nonce: 3 }]);
    assert_eq!(h.s.poll_timeout(), Some(heard + HB * 5 / 2));
    h.advance(HB / 2);
    assert!(matches!(
        h.s.handle_timeout(h.now),
        Err(SessionError::ServerSilent(_))
    ));
}

#[test]
fn silence_is_not_the_servers_fault_while_we_do_not_read() {
    let mut h = Harness::connected(32);
    h.s.set_reading(false, h.now);
    for _ in 0..5 {
        h.advance(HB);
        h.s.handle_timeout(h.now).unwrap();
        h.sent();
    }
    h.s.set_reading(true, h.now);
    assert!(h.s.poll_timeout().unwrap() > h.now);
    h.s.handle_timeout(h.now).unwrap();
}

#[test]
fn sending_postpones_the_ping_and_an_override_replaces_welcomes_interval() {
    let mut h = Harness::new(32);
    h.s = Session::new(SessionConfig {
        heartbeat_override: Some(Duration::from_secs(1)),
        ..SessionConfig::default()
    });
    h.s.start_handshake(String::new(), h.now);
    h.feed(welcome(WelcomeOutcome::New, 1, 0));
    h.sent();
    h.advance(Duration::from_millis(600));
    h.feed(message(1));
    h.s.read_idle();
    h.sent();
    assert_eq!(
        h.s.poll_timeout(),
        Some(h.now + Duration::from_secs(1)),
        "ACK just went out and a frame just came in"
    );
}

#[test]
fn no_welcome_in_time_is_a_handshake_timeout() {
    let mut h = Harness::new(32);
    h.s.start_handshake(String::new(), h.now);
    let deadline = h.s.poll_timeout().unwrap();
    h.s.handle_timeout(deadline - Duration::from_millis(1))
        .unwrap();
    assert!(matches!(
        h.s.handle_timeout(deadline),
        Err(SessionError::HandshakeTimeout(_))
    ));
    h.s.transport_lost("timeout");
    assert!(h.events().is_empty(), "never connected: no Disconnected");
}

#[test]
fn publishes_larger_than_the_servers_frame_limit_are_refused() {
    let mut h = Harness::connected(32);
    let big = Bytes::from(vec![0u8; 2000]);
    assert!(matches!(
        h.s.publish(chan("c"), big),
        Err(ClientError::PayloadTooLarge { max: 1024, .. })
    ));
    let fits = Bytes::from(vec![0u8; 1000]);
    assert_eq!(h.s.publish(chan("c"), fits).unwrap(), 1);
}

#[test]
fn stale_frames_after_the_transport_is_gone_are_ignored() {
    let mut h = Harness::connected(32);
    h.s.transport_lost("gone");
    h.feed(message(5));
    assert_eq!(h.s.stats().messages_received, 0);
}

#[test]
fn a_rejected_publish_is_processed_and_settles_everything_before_it() {
    let mut h = Harness::connected(32);
    let sub = h.s.subscribe(chan("s")).unwrap();
    assert_eq!(sub, 1);
    for p in ["a", "b", "c"] {
        h.publish(p);
    }
    h.sent();
    // 203 naming a pending request id fails that request...
    h.feed(Frame::error(ErrorCode::RateLimited, 1, "slow down"));
    assert!(h.outputs().contains(&Output::RequestDone {
        request_id: 1,
        result: Err(Rejection {
            code: 203,
            message: "slow down".into()
        })
    }));
    assert_eq!(h.s.publish_acked(), 0);
    // ...otherwise it names a publish, like 406 always does.
    h.feed(Frame::error(ErrorCode::RateLimited, 2, "slow down"));
    assert_eq!(h.s.publish_acked(), 2);
    h.feed(Frame::error(ErrorCode::ForbiddenPublish, 3, "no"));
    assert_eq!(h.s.publish_acked(), 3);
    assert_eq!(h.s.stats().publishes_acked, 3);
    // Nothing is re-sent on a resume: the server counts them processed.
    h.outputs();
    h.reconnect();
    h.feed(welcome(WelcomeOutcome::Resumed, 1, 3));
    assert!(publish_seqs(&h.sent()).is_empty());
}

#[test]
fn not_subscribed_completes_an_unsubscribe() {
    let mut h = Harness::connected(32);
    let id = h.s.unsubscribe(chan("never")).unwrap();
    h.feed(Frame::error(ErrorCode::NotSubscribed, id, "not subscribed"));
    assert!(h.outputs().contains(&Output::RequestDone {
        request_id: id,
        result: Ok(0)
    }));
}
