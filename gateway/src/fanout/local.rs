//! The subscribers one worker holds for each channel.
//!
//! Each channel keeps a slab of the subscribing sessions' keys; a session
//! remembers its slot, so leaving a channel is O(1) even on a channel with
//! tens of thousands of subscribers.

use std::collections::HashMap;

use ferry_protocol::ChannelName;
use slab::Slab;

use crate::session::registry::SessionRef;

/// Channel → local subscribers.
#[derive(Debug, Default)]
pub struct LocalChannels {
    channels: HashMap<ChannelName, Slab<SessionRef>>,
}

impl LocalChannels {
    /// Adds a subscriber; returns its slot.
    pub fn attach(&mut self, channel: &ChannelName, session: SessionRef) -> usize {
        self.channels
            .entry(channel.clone())
            .or_default()
            .insert(session)
    }

    /// Removes the subscriber in `slot`.
    pub fn detach(&mut self, channel: &ChannelName, slot: usize) {
        if let Some(subs) = self.channels.get_mut(channel) {
            if subs.contains(slot) {
                subs.remove(slot);
            }
            if subs.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// The subscribers of `channel`.
    pub fn subscribers(&self, channel: &ChannelName) -> Option<&Slab<SessionRef>> {
        self.channels.get(channel)
    }

    /// Channels with at least one local subscriber.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether no channel has a local subscriber.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}
