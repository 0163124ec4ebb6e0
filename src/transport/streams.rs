//! Redis Streams: producers XADD through the same pipelined writer as PUBLISH;
//! consumers read with XREADGROUP (COUNT, BLOCK), acknowledge with XACK in
//! batches, and take over idle entries of crashed group members with
//! XAUTOCLAIM. Consumers use the redis crate: replies are nested arrays, and
//! Streams are not on the Pub/Sub fast path this harness is measured by.

use super::conn::Endpoint;
use super::pubsub::PubSubProducer;
use super::{resp, TransportError};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::time::Duration;

/// Stream keys and settings shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Streams {
    /// Producers' raw connections.
    pub endpoint: Endpoint,
    /// Consumers' and the coordinator's connections: the same address,
    /// credentials and TLS as `endpoint`.
    pub client: std::sync::Arc<redis::Client>,
    /// One stream per channel.
    pub keys: Vec<String>,
    pub payload_len: usize,
    /// Approximate trimming (`XADD MAXLEN ~ N`).
    pub maxlen: Option<u64>,
    /// Entries per XREADGROUP and XAUTOCLAIM.
    pub batch: usize,
}

/// One entry as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index into [`Streams::keys`].
    pub key: usize,
    pub id: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// Only entries added from now on (`$`).
    New,
    /// The whole stream (`0`): a replay.
    Beginning,
}

impl Streams {
    /// A producer writing `XADD key [MAXLEN ~ N] * d <payload>`.
    pub async fn producer(&self) -> Result<PubSubProducer, TransportError> {
        let maxlen = self.maxlen.map(|n| n.to_string());
        let prefixes = self
            .keys
            .iter()
            .map(|key| {
                let mut args: Vec<&[u8]> = vec![b"XADD", key.as_bytes()];
                if let Some(n) = &maxlen {
                    args.extend([&b"MAXLEN"[..], b"~", n.as_bytes()]);
                }
                args.extend([&b"*"[..], b"d"]);
                resp::fixed_prefix(&args, self.payload_len)
            })
            .collect();
        PubSubProducer::connect(&self.endpoint, prefixes, self.payload_len).await
    }

    /// A control connection for the coordinator (backlog, replay).
    pub async fn connection(&self) -> Result<MultiplexedConnection, TransportError> {
        // Blocking reads must not trip the client's own response timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.endpoint.connect_timeout))
            .set_response_timeout(Some(Duration::from_secs(30)));
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    /// Connects consumer `name` of `group`, creating the group on every stream
    /// if it does not exist yet.
    pub async fn consumer(
        &self,
        group: &str,
        name: &str,
        start: GroupStart,
    ) -> Result<StreamsConsumer, TransportError> {
        let mut con = self.connection().await?;
        let id = match start {
            GroupStart::New => "$",
            GroupStart::Beginning => "0",
        };
        for key in &self.keys {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(group)
                .arg(id)
                .arg("MKSTREAM")
                .query_async(&mut con)
                .await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(StreamsConsumer { con, keys: self.keys.clone(), group: group.into(), name: name.into(), count: self.batch })
    }
}

/// One member of a consumer group.
pub struct StreamsConsumer {
    con: MultiplexedConnection,
    keys: Vec<String>,
    group: String,
    name: String,
    count: usize,
}

impl StreamsConsumer {
    /// XREADGROUP: this consumer's own pending entries (`own_pending`, ID 0),
    /// or new ones (`>`, waiting up to `block`). Appends to `out`.
    pub async fn read(&self, own_pending: bool, block: Duration, out: &mut Vec<Entry>) -> Result<(), TransportError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.name).arg("COUNT").arg(self.count);
        if !own_pending {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.keys);
        for _ in &self.keys {
            cmd.arg(if own_pending { "0" } else { ">" });
        }
        // A clone shares the one connection: reads and acknowledgements pipeline on it.
        let reply: Value = cmd.query_async(&mut self.con.clone()).await?;
        if let Value::Array(streams) = reply {
            for stream in streams {
                let Value::Array(mut kv) = stream else { continue };
                let (Some(Value::Array(entries)), Some(Value::BulkString(key))) = (kv.pop(), kv.pop()) else {
                    continue;
                };
                let Some(key) = self.keys.iter().position(|k| k.as_bytes() == key.as_slice()) else { continue };
                entries_into(key, entries, out);
            }
        }
        Ok(())
    }

    /// XAUTOCLAIM on every stream: takes over entries of this group that were
    /// delivered to some consumer and not acknowledged for `min_idle`.
    pub async fn autoclaim(&self, min_idle: Duration, out: &mut Vec<Entry>) -> Result<(), TransportError> {
        for key in 0..self.keys.len() {
            let mut start = b"0-0".to_vec();
            loop {
                let reply: Value = redis::cmd("XAUTOCLAIM")
                    .arg(&self.keys[key])
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(min_idle.as_millis() as u64)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(self.count)
                    .query_async(&mut self.con.clone())
                    .await?;
                let Value::Array(mut parts) = reply else { break };
                parts.truncate(2);
                let (Some(Value::Array(entries)), Some(Value::BulkString(next))) = (parts.pop(), parts.pop()) else {
                    break;
                };
                entries_into(key, entries, out);
                if next == b"0-0" {
                    break;
                }
                start = next;
            }
        }
        Ok(())
    }

    /// XACK the given entries, one command per stream, pipelined; returns how many Redis acknowledged.
    pub async fn ack(&self, entries: &[Entry]) -> Result<u64, TransportError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for (key, name) in self.keys.iter().enumerate() {
            let ids: Vec<&[u8]> = entries.iter().filter(|e| e.key == key).map(|e| e.id.as_slice()).collect();
            if !ids.is_empty() {
                pipe.cmd("XACK").arg(name).arg(&self.group).arg(ids);
            }
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(counts.iter().sum())
    }
}

/// Appends `[id, [field, value, ...]]` entries; deleted entries (a nil body) are skipped.
fn entries_into(key: usize, entries: Vec<Value>, out: &mut Vec<Entry>) {
    for entry in entries {
        let Value::Array(mut parts) = entry else { continue };
        parts.truncate(2);
        let (Some(Value::Array(fields)), Some(Value::BulkString(id))) = (parts.pop(), parts.pop()) else { continue };
        let payload = fields.into_iter().nth(1).and_then(|v| match v {
            Value::BulkString(b) => Some(b),
            _ => None,
        });
        out.push(Entry { key, id, payload: payload.unwrap_or_default() });
    }
}

/// Entries added to the streams and not yet acknowledged, over every group
/// (XINFO GROUPS: `lag` not yet delivered, `pending` delivered but not acknowledged).
pub async fn backlog(con: &mut MultiplexedConnection, keys: &[String]) -> Result<u64, TransportError> {
    let mut total = 0;
    for key in keys {
        let groups: Value = redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(con).await?;
        let Value::Array(groups) = groups else { continue };
        for group in groups {
            let Value::Array(fields) = group else { continue };
            let field = |name: &[u8]| -> i64 {
                fields
                    .chunks(2)
                    .find_map(|kv| match kv {
                        [Value::BulkString(k), Value::Int(n)] if k == name => Some(*n),
                        _ => None,
                    })
                    .unwrap_or(0)
            };
            total += (field(b"lag") + field(b"pending")).max(0) as u64;
        }
    }
    Ok(total)
}
