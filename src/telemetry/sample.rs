//! One node's state at one moment, read from what Redis (or Valkey) says
//! about itself: the text of `INFO`, the lines of `CLIENT LIST TYPE pubsub`,
//! and `XINFO GROUPS` replies; and a second's row of `server.csv` from two
//! such snapshots. Pure: no connection, no clock.

use crate::rows::ServerRow;

/// Which server a node runs, from `INFO server`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `redis` or `valkey` (Valkey says `server_name:valkey`; Redis says nothing of the kind).
    pub server: String,
    /// `valkey_version` on Valkey (whose `redis_version` is a compatibility figure), else `redis_version`.
    pub version: String,
}

impl Identity {
    /// The identity an `INFO` text gives; `None` when it names no version (not an INFO reply).
    pub fn from_info(info: &str) -> Option<Identity> {
        let field = |name: &str| info_field(info, name);
        let server = field("server_name").unwrap_or("redis").to_string();
        let version = field("valkey_version").or_else(|| field("redis_version"))?.to_string();
        Some(Identity { server, version })
    }
}

/// What one node said at one moment; a field is `None` when the node did not say it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was taken, ns since the run's epoch.
    pub at_ns: u64,
    /// CPU seconds the process has used, system + user.
    pub cpu_s: Option<f64>,
    /// CPU seconds of its main thread (Redis 7+, Valkey), system + user.
    pub main_thread_cpu_s: Option<f64>,
    pub used_memory: Option<u64>,
    pub connected_clients: Option<u64>,
    pub commands_processed: Option<u64>,
    pub pubsub_channels: Option<u64>,
    pub pubsub_shard_channels: Option<u64>,
    /// Output-buffer memory of the Pub/Sub clients: sum and largest.
    pub omem: Option<(u64, u64)>,
    pub stream_length: Option<u64>,
    /// Sum over the run's groups of entries not yet delivered to them (`None` when the server does not tell a lag).
    pub group_lag: Option<u64>,
    pub group_pending: Option<u64>,
}

/// The value of `name:value` in an `INFO` text.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

fn info_f64(info: &str, name: &str) -> Option<f64> {
    info_field(info, name)?.parse().ok()
}

fn info_u64(info: &str, name: &str) -> Option<u64> {
    info_field(info, name)?.parse().ok()
}

impl Snapshot {
    /// The fields an `INFO` text gives.
    pub fn from_info(at_ns: u64, info: &str) -> Snapshot {
        let sum = |a: &str, b: &str| Some(info_f64(info, a)? + info_f64(info, b)?);
        Snapshot {
            at_ns,
            cpu_s: sum("used_cpu_sys", "used_cpu_user"),
            main_thread_cpu_s: sum("used_cpu_sys_main_thread", "used_cpu_user_main_thread"),
            used_memory: info_u64(info, "used_memory"),
            connected_clients: info_u64(info, "connected_clients"),
            commands_processed: info_u64(info, "total_commands_processed"),
            pubsub_channels: info_u64(info, "pubsub_channels"),
            pubsub_shard_channels: info_u64(info, "pubsubshard_channels"),
            ..Snapshot::default()
        }
    }
}

/// Output-buffer memory (`omem=`) of the clients a `CLIENT LIST` text lists: sum and largest.
pub fn omem_of_client_list(list: &str) -> (u64, u64) {
    let omem = list.lines().filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("omem="))?.parse::<u64>().ok());
    omem.fold((0, 0), |(sum, max), m| (sum + m, max.max(m)))
}

/// Sum of `lag` (`None` if any group has none: Redis before 7, or a lag it
/// cannot tell) and of `pending` over the groups of an `XINFO GROUPS` reply.
pub fn groups_lag_pending(reply: &redis::Value) -> (Option<u64>, u64) {
    use redis::Value;
    let groups: &[Value] = match reply {
        Value::Array(groups) | Value::Set(groups) => groups,
        _ => &[],
    };
    let (mut lag, mut pending) = (Some(0u64), 0u64);
    for group in groups {
        let pairs: Vec<(&Value, &Value)> = match group {
            Value::Array(kv) => kv.chunks_exact(2).map(|p| (&p[0], &p[1])).collect(),
            Value::Map(kv) => kv.iter().map(|(k, v)| (k, v)).collect(),
            _ => continue,
        };
        let get = |name: &str| {
            pairs.iter().find_map(|(k, v)| match k {
                Value::BulkString(b) if b == name.as_bytes() => Some(*v),
                Value::SimpleString(s) if s == name => Some(*v),
                _ => None,
            })
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        };
        pending += int(get("pending")).unwrap_or(0);
        lag = lag.zip(int(get("lag"))).map(|(a, b)| a + b);
    }
    (lag, pending)
}

/// The row of second `second` of node `node`: levels from `now`, rates from
/// the change since `before` (none without both, or when a counter went
/// back: the node restarted in between).
pub fn row(second: u32, node: u32, before: Option<&Snapshot>, now: Option<&Snapshot>) -> ServerRow {
    let Some(now) = now else { return ServerRow { second, node, ..ServerRow::default() } };
    let elapsed_s = before.map(|b| now.at_ns.saturating_sub(b.at_ns) as f64 / 1e9).filter(|&s| s > 0.0);
    let rate = |f: fn(&Snapshot) -> Option<f64>| {
        let (b, n, s) = (f(before?)?, f(now)?, elapsed_s?);
        (n >= b).then(|| (n - b) / s)
    };
    ServerRow {
        second,
        node,
        server_cpu_pct: rate(|s| s.cpu_s).map(|r| r * 100.0),
        server_main_thread_cpu_pct: rate(|s| s.main_thread_cpu_s).map(|r| r * 100.0),
        used_memory_bytes: now.used_memory,
        connected_clients: now.connected_clients,
        commands_per_s: rate(|s| s.commands_processed.map(|c| c as f64)),
        pubsub_channels: now.pubsub_channels,
        pubsub_shard_channels: now.pubsub_shard_channels,
        subscriber_omem_bytes: now.omem.map(|o| o.0),
        subscriber_omem_max_bytes: now.omem.map(|o| o.1),
        stream_length: now.stream_length,
        group_lag: now.group_lag,
        group_pending: now.group_pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALKEY: &str = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n\
        # Clients\r\nconnected_clients:7\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
        # Stats\r\ntotal_commands_processed:1000\r\npubsub_channels:3\r\npubsubshard_channels:0\r\n\
        # CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.500000\r\nused_cpu_sys_children:0.000000\r\n\
        used_cpu_sys_main_thread:1.000000\r\nused_cpu_user_main_thread:2.000000\r\n";

    #[test]
    fn valkey_and_redis_are_told_apart_by_what_info_says() {
        assert_eq!(Identity::from_info(VALKEY), Some(Identity { server: "valkey".into(), version: "9.1.2".into() }));
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n";
        assert_eq!(Identity::from_info(redis), Some(Identity { server: "redis".into(), version: "7.0.15".into() }));
        assert_eq!(Identity::from_info("ERR unknown"), None);
    }

    #[test]
    fn a_second_is_the_change_between_two_snapshots() {
        let before = Snapshot::from_info(1_000_000_000, VALKEY);
        assert_eq!(before.cpu_s, Some(4.0));
        assert_eq!(before.used_memory, Some(1_048_576), "used_memory, not used_memory_human");
        let later = VALKEY
            .replace("used_cpu_user:2.5", "used_cpu_user:2.9")
            .replace("used_cpu_user_main_thread:2.0", "used_cpu_user_main_thread:2.3")
            .replace("total_commands_processed:1000", "total_commands_processed:3000");
        let mut now = Snapshot::from_info(3_000_000_000, &later);
        now.omem = Some(omem_of_client_list(
            "id=3 addr=127.0.0.1:1 omem=0 tot-mem=1\nid=4 addr=127.0.0.1:2 omem=16384 tot-mem=2\nid=5 omem=100\n",
        ));
        let r = row(1, 2, Some(&before), Some(&now));
        assert_eq!((r.second, r.node), (1, 2));
        assert!((r.server_cpu_pct.unwrap() - 20.0).abs() < 1e-9, "0.4 CPU s over 2 s: {r:?}");
        assert!((r.server_main_thread_cpu_pct.unwrap() - 15.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.commands_per_s, Some(1000.0));
        assert_eq!((r.subscriber_omem_bytes, r.subscriber_omem_max_bytes), (Some(16484), Some(16384)));
        assert_eq!((r.pubsub_channels, r.connected_clients), (Some(3), Some(7)));
        assert_eq!(r.stream_length, None, "not asked: an empty cell");

        // A restarted node's counters start again: no rate across the restart.
        let restarted = Snapshot::from_info(4_000_000_000, &VALKEY.replace("used_cpu_sys:1.5", "used_cpu_sys:0.01"));
        assert_eq!(row(2, 2, Some(&now), Some(&restarted)).server_cpu_pct, None);
        // A node that did not answer: every cell empty, the row still there.
        assert_eq!(row(3, 2, Some(&now), None), ServerRow { second: 3, node: 2, ..ServerRow::default() });
        assert_eq!(row(0, 0, None, Some(&now)).server_cpu_pct, None, "no rate without a snapshot before");
    }

    #[test]
    fn groups_add_up_their_lag_and_pending() {
        use redis::Value;
        let group = |lag: Value, pending: i64| {
            Value::Array(vec![
                Value::BulkString(b"name".to_vec()),
                Value::BulkString(b"g0".to_vec()),
                Value::BulkString(b"pending".to_vec()),
                Value::Int(pending),
                Value::BulkString(b"lag".to_vec()),
                lag,
            ])
        };
        let reply = Value::Array(vec![group(Value::Int(5), 2), group(Value::Int(7), 3)]);
        assert_eq!(groups_lag_pending(&reply), (Some(12), 5));
        let unknown = Value::Array(vec![group(Value::Int(5), 2), group(Value::Nil, 1)]);
        assert_eq!(groups_lag_pending(&unknown), (None, 3), "one lag unknown: the sum is unknown");
        assert_eq!(groups_lag_pending(&Value::Array(vec![])), (Some(0), 0));
    }
}
