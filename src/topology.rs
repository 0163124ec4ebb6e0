//! Redis Cluster: hash slots, the slot map, and names that land where they should.
//!
//! eventbench routes by itself instead of through a cluster client: it reads
//! the slot map once (`CLUSTER SLOTS`), gives the channels (stream keys) of a
//! run hash tags that put channel `c` on master `c % N`, and opens plain
//! connections to the master that owns each channel. All the channels of one
//! node share one hash tag, hence one slot, so multi-key commands
//! (`SSUBSCRIBE a b`, `XREADGROUP ... STREAMS a b`) stay legal on that node.

use crate::connect::ConnError;
use redis::Value;

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The slot of a key or channel, hash tags (`{...}`) included, as `CLUSTER KEYSLOT` computes it.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// One master of a cluster and the slot ranges it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
    /// Inclusive ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Node {
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

/// The masters of a cluster, ordered by their first slot (node 0 serves slot 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub nodes: Vec<Node>,
}

impl Topology {
    /// Reads `CLUSTER SLOTS`; `None` when the server is not a cluster.
    /// `seed_host` replaces an empty host in the reply (a node that does not know its own address).
    pub async fn discover(client: &redis::Client, seed_host: &str) -> Result<Option<Topology>, ConnError> {
        let mut con = client.get_multiplexed_async_connection().await?;
        let reply: redis::RedisResult<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut con).await;
        match reply {
            Ok(v) => Ok(Some(Topology::from_slots(&v, seed_host)?)),
            Err(e) if e.to_string().contains("cluster support disabled") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replicas...], ...]`.
    pub fn from_slots(v: &Value, seed_host: &str) -> Result<Topology, ConnError> {
        let bad = || ConnError::Protocol(crate::connect::resp::RespError("unexpected CLUSTER SLOTS reply"));
        let Value::Array(ranges) = v else { return Err(bad()) };
        let mut nodes: Vec<Node> = Vec::new();
        for range in ranges {
            let Value::Array(parts) = range else { return Err(bad()) };
            let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err(bad());
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) if !h.is_empty() => String::from_utf8_lossy(h).into_owned(),
                _ => seed_host.to_string(),
            };
            let Some(Value::Int(port)) = master.get(1) else { return Err(bad()) };
            let (port, range) = (*port as u16, (*lo as u16, *hi as u16));
            match nodes.iter_mut().find(|n| n.host == host && n.port == port) {
                Some(n) => n.slots.push(range),
                None => nodes.push(Node { host, port, slots: vec![range] }),
            }
        }
        if nodes.is_empty() {
            return Err(ConnError::Refused { what: "CLUSTER SLOTS", message: "no slot is served".into() });
        }
        for n in &mut nodes {
            n.slots.sort_unstable();
        }
        nodes.sort_by_key(|n| n.slots[0]);
        Ok(Topology { nodes })
    }

    /// The index of the node serving `slot`.
    pub fn node_of_slot(&self, slot: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.owns(slot))
    }

    /// `channels` names under `prefix`, channel `c` on node `c % N`, each
    /// node's under one hash tag; with the node index of each.
    pub fn spread(&self, prefix: &str, channels: u32) -> (Vec<String>, Vec<usize>) {
        let n = self.nodes.len();
        let tags: Vec<String> = (0..n)
            .map(|node| {
                (0u32..)
                    .map(|k| format!("n{node}.{k}"))
                    .find(|tag| self.node_of_slot(key_slot(tag.as_bytes())) == Some(node))
                    .expect("every node serves some slot")
            })
            .collect();
        (0..channels as usize).map(|c| (format!("{prefix}{c}:{{{}}}", tags[c % n]), c % n)).unzip()
    }
}

/// A `-MOVED slot host:port` or `-ASK slot host:port` error reply, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK`: this one command goes to `host:port`, after `ASKING`; `MOVED`: the slot lives there now.
    pub ask: bool,
    pub slot: u16,
    /// Empty when the node does not know its own address (use the one it was reached at).
    pub host: String,
    pub port: u16,
}

impl Redirect {
    /// Parses the error text (without the leading `-`); `None` for anything else.
    pub fn parse(error: &[u8]) -> Option<Redirect> {
        let text = std::str::from_utf8(error).ok()?;
        let mut words = text.split(' ');
        let ask = match words.next()? {
            "MOVED" => false,
            "ASK" => true,
            _ => return None,
        };
        let slot = words.next()?.parse().ok().filter(|&s| s < SLOTS)?;
        // The port follows the last colon: an IPv6 host has colons of its own.
        let (host, port) = words.next()?.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Some(Redirect { ask, slot, host, port: port.parse().ok()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_parsed() {
        let r = |ask, slot, host: &str, port| Some(Redirect { ask, slot, host: host.into(), port });
        assert_eq!(Redirect::parse(b"MOVED 3300 127.0.0.1:17102"), r(false, 3300, "127.0.0.1", 17102));
        assert_eq!(Redirect::parse(b"ASK 0 ::1:7000"), r(true, 0, "::1", 7000));
        assert_eq!(Redirect::parse(b"MOVED 16383 :7000"), r(false, 16383, "", 7000));
        for bad in
            [&b"MOVED 16384 h:1"[..], b"MOVED x h:1", b"MOVED 1 h", b"ASK 1 h:99999", b"ERR x", b"MOVED", b"\xff"]
        {
            assert_eq!(Redirect::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn slots_match_cluster_keyslot() {
        // Values from CLUSTER KEYSLOT on Redis 7.0 and the cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS, "an empty tag hashes the whole key");
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    fn topology() -> Topology {
        let node = |port, slots| Node { host: "127.0.0.1".into(), port, slots };
        Topology { nodes: vec![node(1, vec![(0, 5460)]), node(2, vec![(5461, 10922)]), node(3, vec![(10923, 16383)])] }
    }

    #[test]
    fn names_are_spread_round_robin_one_slot_per_node() {
        let t = topology();
        let (names, nodes) = t.spread("eventbench:abc:", 7);
        assert_eq!(nodes, [0, 1, 2, 0, 1, 2, 0]);
        for (name, node) in names.iter().zip(&nodes) {
            assert!(name.starts_with("eventbench:abc:"), "{name}");
            assert_eq!(t.node_of_slot(key_slot(name.as_bytes())), Some(*node), "{name}");
        }
        assert_eq!(key_slot(names[0].as_bytes()), key_slot(names[3].as_bytes()), "one slot per node");
    }

    #[test]
    fn cluster_slots_reply_is_parsed_and_ordered() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let range = |lo, hi, host: &str, port| {
            Value::Array(vec![Value::Int(lo), Value::Int(hi), Value::Array(vec![b(host), Value::Int(port), b("id")])])
        };
        let v = Value::Array(vec![range(5461, 10922, "", 7001), range(0, 5460, "10.0.0.1", 7000)]);
        let t = Topology::from_slots(&v, "seed").unwrap();
        assert_eq!((t.nodes[0].port, t.nodes[0].host.as_str()), (7000, "10.0.0.1"));
        assert_eq!((t.nodes[1].port, t.nodes[1].host.as_str()), (7001, "seed"));
        assert_eq!(t.node_of_slot(6000), Some(1));
    }
}
