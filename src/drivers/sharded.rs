//! Sharded Pub/Sub (Redis 7): SPUBLISH and SSUBSCRIBE, each channel confined
//! to the shard that owns its slot. It is the Pub/Sub driver with other
//! commands; what differs is here: no pattern subscriptions, and a target
//! that must know SPUBLISH.

use super::pubsub::PubSub;
use super::{Capabilities, Driver, Registration, Traits};
use crate::connect::redact_url;
use crate::scenario::TransportKind;
use crate::target::TargetError;
use std::sync::Arc;

/// Sharded Pub/Sub as the registry knows it.
pub const REGISTRATION: Registration = Registration {
    kind: TransportKind::Sharded,
    describe: "sharded Pub/Sub (SPUBLISH, SSUBSCRIBE; there is no SPSUBSCRIBE)",
    // No SPSUBSCRIBE.
    capabilities: Capabilities { workers: true, ..Capabilities::NONE },
    traits: Traits { compared_by_default: false, ..super::pubsub::TRAITS },
    build: |layout| {
        Box::pin(async move {
            let server = layout.server()?;
            check_spublish(&server.client, &server.url).await?;
            Ok(Arc::new(PubSub::new(layout, true)?) as Arc<dyn Driver>)
        })
    },
};

/// `--transport sharded` needs SPUBLISH (Redis 7): says so before the run, not as a failed one.
async fn check_spublish(client: &redis::Client, url: &str) -> Result<(), TargetError> {
    let unreachable = |e: redis::RedisError| TargetError::Unreachable { url: redact_url(url), message: e.to_string() };
    let mut con = client.get_multiplexed_async_connection().await.map_err(unreachable)?;
    let info: redis::Value =
        redis::cmd("COMMAND").arg("INFO").arg("SPUBLISH").query_async(&mut con).await.map_err(unreachable)?;
    match info {
        redis::Value::Array(v) if v.first().is_some_and(|c| !matches!(c, redis::Value::Nil)) => Ok(()),
        _ => Err(TargetError::NoShardedPubSub { url: redact_url(url) }),
    }
}
