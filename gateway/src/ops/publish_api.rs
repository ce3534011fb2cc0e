//! `POST /v1/publish`: a server-side publish into a channel or to a user.
//!
//! The message goes to the channel's sequencer like a client's PUBLISH, so
//! it is ordered with everything else on that channel; the answer carries
//! the offset the sequencer assigned.

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use ferry_protocol::channel::USER_CHANNEL_PREFIX;
use ferry_protocol::{ChannelName, DecodeLimits};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::http::{ApiError, OpsContext, authorize, json, parse_json, read_body};
use crate::fanout::router::owner_of;
use crate::runtime::mesh::{Mesh, SequencerMsg};

/// How long a publish may wait for room in a full sequencer queue. A full
/// queue means the gateway is overloaded: tell the caller to retry rather
/// than hold the request open.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The body as sent. Both targets and both payload forms are optional here
/// so that "both" and "neither" get a precise reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: Option<String>,
    user: Option<String>,
    payload: Option<String>,
    payload_base64: Option<String>,
}

/// A publish that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The channel (`user:<id>` for a user).
    pub channel: ChannelName,
    /// The payload bytes.
    pub payload: Bytes,
}

impl PublishRequest {
    /// Validates a JSON body against the gateway's channel-name rules.
    pub fn parse(body: &[u8], limits: &DecodeLimits) -> Result<Self, ApiError> {
        let body: PublishBody = parse_json(body)?;
        let name = match (body.channel, body.user) {
            (Some(channel), None) => channel,
            (None, Some(user)) if user.is_empty() => {
                return Err(ApiError::BadRequest("\"user\" must not be empty".into()));
            }
            (None, Some(user)) => format!("{USER_CHANNEL_PREFIX}{user}"),
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "give either \"channel\" or \"user\", not both".into(),
                ));
            }
            (None, None) => {
                return Err(ApiError::BadRequest("give \"channel\" or \"user\"".into()));
            }
        };
        // The configured limit, not ChannelName::parse's default: a name
        // the clients could not subscribe to must not be publishable here.
        let channel = ChannelName::new(Bytes::from(name), limits.max_channel_len)
            .map_err(|e| ApiError::BadRequest(format!("invalid channel: {e}")))?;
        let payload = match (body.payload, body.payload_base64) {
            (Some(text), None) => Bytes::from(text.into_bytes()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map(Bytes::from)
                .map_err(|e| ApiError::BadRequest(format!("invalid \"payload_base64\": {e}")))?,
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "give either \"payload\" or \"payload_base64\", not both".into(),
                ));
            }
            (None, None) => {
                return Err(ApiError::BadRequest(
                    "give \"payload\" (text) or \"payload_base64\"".into(),
                ));
            }
        };
        Ok(Self { channel, payload })
    }
}

/// Handles `POST /v1/publish`.
pub async fn handle(
    request: Request<Incoming>,
    context: &OpsContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let settings = context.settings();
    authorize(request.headers(), settings.ops_api_key.as_ref())?;
    let body = read_body(request, settings.decode.max_frame_size).await?;
    let PublishRequest { channel, payload } = PublishRequest::parse(&body, &settings.decode)?;
    let name = channel.as_str().to_owned();
    let offset = publish(&context.mesh, channel, payload).await?;
    metrics::counter!("ferry_ops_publishes_total").increment(1);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "channel": name, "offset": offset }),
    ))
}

/// Sends a message to its channel's sequencer; returns the offset it got.
pub async fn publish(mesh: &Mesh, channel: ChannelName, payload: Bytes) -> Result<u64, ApiError> {
    let owner = owner_of(&channel, mesh.len());
    let (reply, offset) = oneshot::channel();
    let msg = SequencerMsg::Publish {
        channel,
        payload,
        received_at: Instant::now(),
        reply: Some(reply),
    };
    match tokio::time::timeout(ENQUEUE_TIMEOUT, mesh.worker(owner).sequencer.send(msg)).await {
        Err(_) => Err(ApiError::Unavailable(
            "the channel's sequencer queue is full; retry later",
        )),
        // The worker's inbox is closed: it has finished draining.
        Ok(Err(_)) => Err(ApiError::Unavailable("the gateway is shutting down")),
        Ok(Ok(())) => offset
            .await
            .map_err(|_| ApiError::Unavailable("the gateway is shutting down")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PublishRequest, ApiError> {
        PublishRequest::parse(body.as_bytes(), &DecodeLimits::default())
    }

    fn reason(body: &str) -> String {
        match parse(body) {
            Err(ApiError::BadRequest(reason)) => reason,
            other => panic!("{body}: expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_channel_or_a_user_with_text_or_base64() {
        let r = parse(r#"{"channel":"chat:1","payload":"hi"}"#).expect("valid");
        assert_eq!(r.channel.as_str(), "chat:1");
        assert_eq!(r.payload.as_ref(), b"hi");
        let r = parse(r#"{"user":"alice","payload_base64":"AAEC/w=="}"#).expect("valid");
        assert_eq!(r.channel.as_str(), "user:alice");
        assert_eq!(r.payload.as_ref(), &[0, 1, 2, 255]);
        let r = parse(r#"{"channel":"c","payload":""}"#).expect("empty payload");
        assert!(r.payload.is_empty());
    }

    #[test]
    fn refuses_every_ambiguous_or_invalid_body_with_a_reason() {
        assert!(reason("{").contains("invalid JSON"));
        assert!(reason("[]").contains("invalid JSON"));
        assert!(reason(r#"{"channel":"c","payload":"x","extra":1}"#).contains("unknown field"));
        assert!(reason(r#"{"channel":"c","user":"u","payload":"x"}"#).contains("not both"));
        assert!(reason(r#"{"payload":"x"}"#).contains("\"channel\" or \"user\""));
        assert!(reason(r#"{"channel":"c"}"#).contains("payload"));
        assert!(
            reason(r#"{"channel":"c","payload":"x","payload_base64":"eA=="}"#).contains("not both")
        );
        assert!(reason(r#"{"channel":"c","payload_base64":"!!"}"#).contains("payload_base64"));
        assert!(reason(r#"{"channel":"a b","payload":"x"}"#).contains("invalid channel"));
        assert!(reason(r#"{"channel":"","payload":"x"}"#).contains("invalid channel"));
        assert!(reason(r#"{"user":"","payload":"x"}"#).contains("empty"));
        assert!(reason(r#"{"user":"a b","payload":"x"}"#).contains("invalid channel"));
        assert!(reason(r#"{"channel":1,"payload":"x"}"#).contains("invalid JSON"));
    }

    #[test]
    fn channel_names_follow_the_configured_length_limit() {
        let limits = DecodeLimits {
            max_channel_len: 4,
            ..DecodeLimits::default()
        };
        assert!(PublishRequest::parse(br#"{"channel":"abcd","payload":"x"}"#, &limits).is_ok());
        assert!(PublishRequest::parse(br#"{"channel":"abcde","payload":"x"}"#, &limits).is_err());
    }
}
