//! Which worker sequences a channel.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use ferry_protocol::ChannelName;

/// The worker that owns (sequences) `channel`. Stable for a process: it
/// uses a hasher with fixed keys.
pub fn owner_of(channel: &ChannelName, workers: usize) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(channel.as_bytes());
    // workers >= 1 always; the remainder fits usize because it is < workers.
    (hash % workers.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_in_range() {
        let c = ChannelName::parse("chat:1").unwrap();
        let first = owner_of(&c, 4);
        assert!(first < 4);
        assert_eq!(owner_of(&c, 4), first);
        assert_eq!(owner_of(&c, 1), 0);
    }

    #[test]
    fn channels_spread_over_workers() {
        let mut seen = [0usize; 2];
        for i in 0..100 {
            let c = ChannelName::parse(&format!("room:{i}")).unwrap();
            seen[owner_of(&c, 2)] += 1;
        }
        assert!(seen[0] > 20 && seen[1] > 20, "{seen:?}");
    }
}
