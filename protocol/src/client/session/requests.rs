//! Pending SUBSCRIBE / UNSUBSCRIBE requests, kept until answered and sent
//! again after every WELCOME.

use crate::channel::ChannelName;
use crate::frame::Frame;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestKind {
    Subscribe,
    Unsubscribe,
}

/// One request, by id in the session.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub kind: RequestKind,
    pub channel: ChannelName,
}

impl Request {
    pub fn frame(&self, request_id: u64) -> Frame {
        let channel = self.channel.clone();
        match self.kind {
            RequestKind::Subscribe => Frame::Subscribe {
                request_id,
                channel,
            },
            RequestKind::Unsubscribe => Frame::Unsubscribe {
                request_id,
                channel,
            },
        }
    }
}
