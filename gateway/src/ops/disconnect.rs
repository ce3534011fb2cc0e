//! `POST /v1/disconnect`: close a user's sessions on every worker.
//!
//! The HTTP side asks every worker over its control queue
//! ([`ControlMsg::DisconnectUser`]) and adds up the answers. The worker
//! side kills the user's attached connections with `DISCONNECTED`; with
//! `drop_sessions` it then forgets the sessions too, so they cannot be
//! resumed.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ferry_protocol::{ChannelName, ErrorCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::http::{ApiError, OpsContext, authorize, json, parse_json, read_body};
use crate::runtime::mesh::ControlMsg;
use crate::runtime::state::WorkerState;
use crate::runtime::worker::Worker;
use crate::session::registry::SessionRef;
use crate::session::state::Attachment;

/// Longest user id accepted, in bytes (user ids live in channel names,
/// which are far shorter).
const MAX_USER_LEN: usize = 1024;

/// How long a worker waits for killed connections to let go of their
/// sessions before dropping the sessions anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// How long the API waits for room in a worker's control queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// A disconnect that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// The authenticated user whose sessions close.
    pub user: String,
    /// Also forget the sessions (no resume).
    #[serde(default)]
    pub drop_sessions: bool,
}

impl DisconnectRequest {
    /// Validates a JSON body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let request: Self = parse_json(body)?;
        if request.user.is_empty() {
            return Err(ApiError::BadRequest("\"user\" must not be empty".into()));
        }
        if request.user.len() > MAX_USER_LEN {
            return Err(ApiError::BadRequest(format!(
                "\"user\" is longer than {MAX_USER_LEN} bytes"
            )));
        }
        Ok(request)
    }
}

/// Handles `POST /v1/disconnect`.
pub async fn handle(
    request: Request<Incoming>,
    context: &OpsContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let settings = context.settings();
    authorize(request.headers(), settings.ops_api_key.as_ref())?;
    let body = read_body(request, settings.decode.max_frame_size).await?;
    let DisconnectRequest {
        user,
        drop_sessions,
    } = DisconnectRequest::parse(&body)?;
    // Ask every worker first, then collect: the workers work in parallel.
    let mut answers = Vec::with_capacity(context.mesh.len());
    for links in context.mesh.all() {
        let (reply, answer) = oneshot::channel();
        let msg = ControlMsg::DisconnectUser {
            user: user.clone(),
            drop_sessions,
            reply,
        };
        match tokio::time::timeout(ENQUEUE_TIMEOUT, links.control.send(msg)).await {
            Err(_) => return Err(ApiError::Unavailable("a worker's control queue is full")),
            Ok(Err(_)) => return Err(ApiError::Unavailable("the gateway is shutting down")),
            Ok(Ok(())) => answers.push(answer),
        }
    }
    let mut sessions = 0;
    for answer in answers {
        sessions += answer
            .await
            .map_err(|_| ApiError::Unavailable("the gateway is shutting down"))?;
    }
    tracing::info!(user, drop_sessions, sessions, "ops: disconnected user");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "sessions": sessions }),
    ))
}

/// A session of the user, and the connection that carried it when it was
/// killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The session.
    pub sref: SessionRef,
    /// Its connection at kill time; `None` if it was detached.
    pub conn: Option<u64>,
}

/// Kills every attached session of `user` with `DISCONNECTED`; returns all
/// of the user's sessions, attached or not.
pub fn kill_user_sessions(state: &mut WorkerState, user: &str) -> Vec<Target> {
    let mut targets = Vec::new();
    for (sref, session) in state.sessions.iter_mut() {
        if session.user() != Some(user) {
            continue;
        }
        let conn = match session.attachment() {
            Attachment::Attached { conn } => {
                session.kill(ErrorCode::Disconnected);
                Some(conn)
            }
            Attachment::Detached { .. } => None,
        };
        targets.push(Target { sref, conn });
    }
    targets
}

/// Whether every killed connection has let go of its session. Removing a
/// session under a live connection would make it report
/// `SESSION_TAKEN_OVER` instead of `DISCONNECTED`.
pub fn all_released(state: &WorkerState, targets: &[Target]) -> bool {
    targets
        .iter()
        .all(|t| match (state.sessions.get(t.sref), t.conn) {
            (Some(session), Some(conn)) => !session.is_attached_to(conn),
            _ => true,
        })
}

/// Forgets the targets; returns the channels whose sequencers must be told.
pub fn remove_sessions(state: &mut WorkerState, targets: &[Target]) -> Vec<ChannelName> {
    let mut channels = Vec::new();
    for t in targets {
        if let Some((_, mut left)) = state.remove_session(t.sref) {
            channels.append(&mut left);
        }
    }
    channels
}

/// The worker side of [`ControlMsg::DisconnectUser`]. Answers at once when
/// only killing; when dropping, answers once the sessions are gone, from a
/// task of its own so the control queue keeps moving meanwhile.
pub fn disconnect_user(
    worker: &Rc<Worker>,
    user: &str,
    drop_sessions: bool,
    reply: oneshot::Sender<usize>,
) {
    let targets = kill_user_sessions(&mut worker.state.borrow_mut(), user);
    if !drop_sessions {
        let killed = targets.iter().filter(|t| t.conn.is_some()).count();
        let _ = reply.send(killed);
        return;
    }
    let worker = worker.clone();
    tokio::task::spawn_local(async move {
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        while !all_released(&worker.state.borrow(), &targets)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channels = remove_sessions(&mut worker.state.borrow_mut(), &targets);
        worker.unsubscribe_all(channels).await;
        let _ = reply.send(targets.len());
    });
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ferry_protocol::replay_log::ReplayLimits;
    use ferry_protocol::{ResumeSecret, SessionId};

    use super::*;
    use crate::fanout::sequencer::HistoryLimits;
    use crate::session::state::Session;

    fn state() -> WorkerState {
        WorkerState::new(
            1,
            HistoryLimits {
                messages: 16,
                bytes: 1 << 20,
            },
            std::time::Duration::from_secs(60),
        )
    }

    fn add(st: &mut WorkerState, n: u8, user: Option<&str>) -> SessionRef {
        st.sessions.insert(Session::new(
            SessionId([n; 16]),
            ResumeSecret([n; 32]),
            user.map(str::to_owned),
            ReplayLimits::default(),
            u64::from(n),
        ))
    }

    fn code(st: &WorkerState, r: SessionRef) -> Option<ErrorCode> {
        st.sessions.get(r).and_then(Session::kill_code)
    }

    #[test]
    fn kills_only_the_users_attached_sessions() {
        let mut st = state();
        let a1 = add(&mut st, 1, Some("alice"));
        let a2 = add(&mut st, 2, Some("alice"));
        let b = add(&mut st, 3, Some("bob"));
        let anon = add(&mut st, 4, None);
        st.sessions.get_mut(a2).expect("a2").detach(Instant::now());
        let targets = kill_user_sessions(&mut st, "alice");
        assert_eq!(targets.len(), 2);
        assert_eq!(code(&st, a1), Some(ErrorCode::Disconnected));
        assert_eq!(code(&st, a2), None, "a detached session has no connection");
        assert_eq!(code(&st, b), None);
        assert_eq!(code(&st, anon), None);
        assert!(kill_user_sessions(&mut st, "carol").is_empty());
    }

    #[test]
    fn sessions_are_dropped_only_after_their_connection_let_go() {
        let mut st = state();
        let c = ChannelName::parse("room").expect("channel");
        let a = add(&mut st, 1, Some("alice"));
        st.sessions
            .get_mut(a)
            .expect("a")
            .add_subscription(c.clone(), 0);
        let targets = kill_user_sessions(&mut st, "alice");
        assert!(!all_released(&st, &targets));
        // The connection driver saw the kill and detached.
        st.sessions.get_mut(a).expect("a").detach(Instant::now());
        assert!(all_released(&st, &targets));
        assert_eq!(remove_sessions(&mut st, &targets), vec![c]);
        assert!(st.sessions.is_empty());
        assert!(all_released(&st, &targets));
    }

    #[test]
    fn request_needs_a_user() {
        let r = DisconnectRequest::parse(br#"{"user":"alice","drop_sessions":true}"#).expect("ok");
        assert_eq!(r.user, "alice");
        assert!(r.drop_sessions);
        let r = DisconnectRequest::parse(br#"{"user":"alice"}"#).expect("ok");
        assert!(!r.drop_sessions);
        for bad in [
            "",
            "{}",
            r#"{"user":""}"#,
            r#"{"user":"a","x":1}"#,
            r#"{"user":"a","drop_sessions":"yes"}"#,
        ] {
            assert!(
                matches!(
                    DisconnectRequest::parse(bad.as_bytes()),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
