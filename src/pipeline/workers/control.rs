//! The control key space through which the processes of one run meet, on a
//! Redis they all reach (the target by default): `eventbench:ctl:{<run>}:*` (the run's name a hash tag, so that on a
//! cluster all of a run's keys live on the node that owns its slot).
//!
//! | key | type | written by | what |
//! |---|---|---|---|
//! | `plan` | string | coordinator | the [`Plan`]: scenario, URL, workers, epoch |
//! | `workers` | list | workers | one [`Registration`] each; its position is the worker's index |
//! | `ready` | list | workers | indices of the workers whose swarm is connected |
//! | `start` | string | coordinator | the common warmup start, ns since the epoch |
//! | `measured` | hash | workers | index → its producers' measured messages per channel |
//! | `results` | list | workers | one [`WorkerResult`] each |
//! | `live` | hash | workers | index → its live counters ([`Snapshot`]), once a second while it runs |
//! | `stop` | string | coordinator | present: stop producing (Ctrl-C) |
//! | `beat` | hash | workers | index → a count each worker raises once a second, from joining until its result is out |
//!
//! Every key expires (a run that dies leaves nothing for long) and the
//! coordinator deletes them all when it is done.

use crate::meters::Snapshot;
use crate::swarm::SwarmOutput;
use redis::aio::MultiplexedConnection;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;

/// Bumped when the key space or the shape of its values changes.
pub const PROTOCOL: u32 = 3;

/// eventbench's version and the message header's: workers must match the coordinator in both.
pub fn version() -> String {
    format!("{} (control {PROTOCOL}, header {})", env!("CARGO_PKG_VERSION"), crate::wire::VERSION)
}

/// What the coordinator tells the workers before they start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub version: String,
    /// Worker processes in the run.
    pub workers: u32,
    /// The scenario as TOML (never with a password).
    pub scenario: String,
    /// The Redis under test, password masked (workers take it from REDIS_PASSWORD).
    pub url: String,
    /// Names the run's channels: the same in every process.
    pub nonce: String,
    /// The common epoch, ns since 1970 on Redis's clock (`TIME`).
    pub epoch_unix_ns: u64,
}

/// What a worker tells about itself when it joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Redis's clock minus this worker's wall clock, ns.
    pub offset_ns: i64,
    /// How far the offset may be off, ns (half the tightest round trip).
    pub uncertainty_ns: u64,
}

/// What a worker measured, or why it could not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    pub index: u32,
    /// Its CPU use over the measured phase, % of the CPUs it may use.
    pub cpu_pct: f64,
    /// Its busiest thread's CPU over the measured phase, % of one CPU.
    #[serde(default)]
    pub busiest_thread_pct: f64,
    pub outcome: Result<SwarmOutput, String>,
}

/// A worker's latest checkpoint (`--checkpoint`): what its share measured so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerCheckpoint {
    /// Which checkpoint of the run (1, 2, ...): the coordinator merges the workers' same one.
    pub request: u64,
    /// When the worker asked its threads for it, ns since the run's epoch.
    pub taken_ns: u64,
    pub out: SwarmOutput,
}

/// One run's control keys on one connection.
#[derive(Clone)]
pub struct Control {
    con: MultiplexedConnection,
    run: String,
    ttl_s: u64,
}

type R<T> = redis::RedisResult<T>;

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("control values serialize")
}

fn parse<T: DeserializeOwned>(what: &str, text: &str) -> R<T> {
    serde_json::from_str(text).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Parse, "malformed control value", format!("{what}: {e}")))
    })
}

/// The key `name` of run `run`. The run's name is a hash tag: on a cluster,
/// all of a run's keys are in one slot, on one node.
pub fn key_of(run: &str, name: &str) -> String {
    format!("eventbench:ctl:{{{run}}}:{name}")
}

/// The runs on the control Redis that are still waiting for workers (planned, not started).
pub async fn waiting_runs(client: &redis::Client, timeout: Duration) -> R<Vec<String>> {
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout));
    let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
    let mut runs = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("eventbench:ctl:*:plan")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        for key in keys {
            let tagged = key.strip_prefix("eventbench:ctl:").and_then(|k| k.strip_suffix(":plan"));
            let Some(run) = tagged.and_then(|k| k.strip_prefix('{')).and_then(|k| k.strip_suffix('}')) else {
                continue;
            };
            let started: bool = redis::cmd("EXISTS").arg(key_of(run, "start")).query_async(&mut con).await?;
            if !started {
                runs.push(run.to_string());
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    runs.sort();
    runs.dedup();
    Ok(runs)
}

/// The longest a control command may wait for its answer.
pub const CONTROL_ANSWER: Duration = Duration::from_secs(5);

/// The answer limit of this process's control connection, in ms, for
/// messages: a timeout error of the redis crate does not say how long it
/// waited. One control Redis per process.
static ANSWER_LIMIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(5000);

/// How long a control command waited before it gave up.
pub fn answer_limit() -> Duration {
    Duration::from_millis(ANSWER_LIMIT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

impl Control {
    /// Connects within `timeout`; the keys live for `ttl` after each write.
    pub async fn connect(client: &redis::Client, run: &str, timeout: Duration, ttl: Duration) -> R<Control> {
        let answer = timeout.min(CONTROL_ANSWER);
        ANSWER_LIMIT_MS.store(answer.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            // A control Redis that stops answering ends the run within this.
            .set_response_timeout(Some(answer));
        let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
        redis::cmd("PING").query_async::<()>(&mut con).await?;
        Ok(Control { con, run: run.to_string(), ttl_s: ttl.as_secs().max(60) })
    }

    fn key(&self, name: &str) -> String {
        key_of(&self.run, name)
    }

    async fn set(&mut self, name: &str, value: String) -> R<()> {
        redis::cmd("SET").arg(self.key(name)).arg(value).arg("EX").arg(self.ttl_s).query_async(&mut self.con).await
    }

    async fn get(&mut self, name: &str) -> R<Option<String>> {
        redis::cmd("GET").arg(self.key(name)).query_async(&mut self.con).await
    }

    /// Appends to a list; returns its new length.
    async fn push(&mut self, name: &str, value: String) -> R<u64> {
        let key = self.key(name);
        let (len, _): (u64, ()) = redis::pipe()
            .cmd("RPUSH")
            .arg(&key)
            .arg(value)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl_s)
            .query_async(&mut self.con)
            .await?;
        Ok(len)
    }

    pub async fn put_plan(&mut self, plan: &Plan) -> R<()> {
        self.set("plan", json(plan)).await
    }

    pub async fn plan(&mut self) -> R<Option<Plan>> {
        self.get("plan").await?.map(|t| parse("plan", &t)).transpose()
    }

    /// Joins the run; returns this worker's index (0-based, in order of joining).
    pub async fn register(&mut self, r: &Registration) -> R<u32> {
        Ok(self.push("workers", json(r)).await? as u32 - 1)
    }

    pub async fn registrations(&mut self) -> R<Vec<Registration>> {
        let all: Vec<String> =
            redis::cmd("LRANGE").arg(self.key("workers")).arg(0).arg(-1).query_async(&mut self.con).await?;
        all.iter().map(|t| parse("registration", t)).collect()
    }

    pub async fn mark_ready(&mut self, index: u32) -> R<()> {
        self.push("ready", index.to_string()).await.map(drop)
    }

    /// The indices of the workers whose swarm is connected.
    pub async fn ready(&mut self) -> R<Vec<u32>> {
        redis::cmd("LRANGE").arg(self.key("ready")).arg(0).arg(-1).query_async(&mut self.con).await
    }

    pub async fn set_start(&mut self, warmup_start_ns: u64) -> R<()> {
        self.set("start", warmup_start_ns.to_string()).await
    }

    pub async fn start(&mut self) -> R<Option<u64>> {
        Ok(self.get("start").await?.and_then(|t| t.parse().ok()))
    }

    pub async fn put_measured(&mut self, index: u32, measured: &[u64]) -> R<()> {
        self.put_field("measured", index, json(&measured)).await
    }

    /// For a worker given up: nothing more to wait for from its producers (unless
    /// it said what they sent before it was lost), so the others' drain is not held.
    pub async fn give_up_measured(&mut self, index: u32) -> R<()> {
        // HSETNX: what the worker told before it was lost stands.
        self.set_field("HSETNX", "measured", index, "[]".into()).await
    }

    /// Sets worker `index`'s field of the hash `name`, which expires with the run's other keys.
    async fn put_field(&mut self, name: &str, index: u32, value: String) -> R<()> {
        self.set_field("HSET", name, index, value).await
    }

    /// `verb` (HSET or HSETNX) of worker `index`'s field of the hash `name`, and the hash's expiry.
    async fn set_field(&mut self, verb: &str, name: &str, index: u32, value: String) -> R<()> {
        let key = self.key(name);
        redis::pipe()
            .cmd(verb)
            .arg(&key)
            .arg(index)
            .arg(value)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl_s)
            .ignore()
            .query_async(&mut self.con)
            .await
    }

    /// Every worker's measured messages per channel, summed, once all `workers` have told theirs.
    pub async fn all_measured(&mut self, workers: u32) -> R<Option<Vec<u64>>> {
        let all: Vec<String> = redis::cmd("HVALS").arg(self.key("measured")).query_async(&mut self.con).await?;
        if all.len() < workers as usize {
            return Ok(None);
        }
        let mut sum: Vec<u64> = Vec::new();
        for text in &all {
            let counts: Vec<u64> = parse("measured", text)?;
            sum.resize(sum.len().max(counts.len()), 0);
            sum.iter_mut().zip(counts).for_each(|(a, b)| *a += b);
        }
        Ok(Some(sum))
    }

    /// A worker's live counters, replacing its previous ones.
    pub async fn put_live(&mut self, index: u32, snapshot: &Snapshot) -> R<()> {
        self.put_field("live", index, json(snapshot)).await
    }

    /// Every worker's latest live counters (those that have published).
    pub async fn live(&mut self) -> R<Vec<Snapshot>> {
        let all: Vec<String> = redis::cmd("HVALS").arg(self.key("live")).query_async(&mut self.con).await?;
        all.iter().map(|t| parse("live", t)).collect()
    }

    /// One heartbeat of worker `index`: it is alive and answering.
    pub async fn beat(&mut self, index: u32) -> R<()> {
        let key = self.key("beat");
        redis::pipe()
            .cmd("HINCRBY")
            .arg(&key)
            .arg(index)
            .arg(1)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl_s)
            .ignore()
            .query_async(&mut self.con)
            .await
    }

    /// Each worker's heartbeat count, by index (0 for one that never beat).
    pub async fn beats(&mut self, workers: u32) -> R<Vec<u64>> {
        let all: std::collections::HashMap<u32, u64> =
            redis::cmd("HGETALL").arg(self.key("beat")).query_async(&mut self.con).await?;
        Ok((0..workers).map(|i| all.get(&i).copied().unwrap_or(0)).collect())
    }

    pub async fn publish(&mut self, result: &WorkerResult) -> R<()> {
        self.push("results", json(result)).await.map(drop)
    }

    /// Takes the next published result, if there is one.
    pub async fn take_result(&mut self) -> R<Option<WorkerResult>> {
        let text: Option<String> = redis::cmd("LPOP").arg(self.key("results")).query_async(&mut self.con).await?;
        text.map(|t| parse("result", &t)).transpose()
    }

    /// Replaces worker `index`'s checkpoint with a newer one; its number goes
    /// in a small key of its own after it, for the coordinator to poll.
    pub async fn put_checkpoint(&mut self, index: u32, checkpoint: &WorkerCheckpoint) -> R<()> {
        self.set(&format!("checkpoint:{index}"), json(checkpoint)).await?;
        self.set(&format!("checkpoint-request:{index}"), checkpoint.request.to_string()).await
    }

    /// The number of each worker's latest checkpoint (0: none yet).
    pub async fn checkpoint_requests(&mut self, workers: u32) -> R<Vec<u64>> {
        let mut all = Vec::new();
        for index in 0..workers {
            let text = self.get(&format!("checkpoint-request:{index}")).await?;
            all.push(text.and_then(|t| t.parse().ok()).unwrap_or(0));
        }
        Ok(all)
    }

    /// Every worker's latest checkpoint (`None` where a worker has none yet).
    pub async fn checkpoints(&mut self, workers: u32) -> R<Vec<Option<WorkerCheckpoint>>> {
        let mut all = Vec::new();
        for index in 0..workers {
            let text = self.get(&format!("checkpoint:{index}")).await?;
            all.push(text.map(|t| parse("checkpoint", &t)).transpose()?);
        }
        Ok(all)
    }

    pub async fn request_stop(&mut self) -> R<()> {
        self.set("stop", "1".into()).await
    }

    pub async fn stop_requested(&mut self) -> R<bool> {
        Ok(self.get("stop").await?.is_some())
    }

    /// Redis's clock (`TIME`), ns since 1970.
    pub async fn server_time_ns(&mut self) -> R<u64> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.con).await?;
        Ok(secs * 1_000_000_000 + micros * 1_000)
    }

    /// Deletes every key of the run.
    pub async fn delete(&mut self, workers: u32) -> R<()> {
        let names = ["plan", "workers", "ready", "start", "measured", "results", "stop", "live", "beat"];
        let mut keys: Vec<String> = names.iter().map(|n| self.key(n)).collect();
        for i in 0..workers {
            keys.push(self.key(&format!("checkpoint:{i}")));
            keys.push(self.key(&format!("checkpoint-request:{i}")));
        }
        redis::cmd("DEL").arg(keys).query_async(&mut self.con).await
    }
}
