//! How messages travel through Redis. The swarm drives a [`Transport`]; each
//! transport hides its commands behind a producer and a consumer connection.

pub mod producer;
pub mod pubsub;
pub mod streams;

use crate::connect::ConnError;
use crate::wire::Header;
use std::future::Future;

/// A message as a consumer sees it, borrowed from the connection's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The payload, header first.
    pub payload: &'a [u8],
}

/// What the server acknowledged of a producer's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acks {
    /// Replies received, one per message sent.
    pub replies: u64,
    /// For the measured messages: the sum of PUBLISH's reply (subscribers reached).
    pub reached: u64,
    /// Error replies.
    pub errors: u64,
    /// Error replies that were cluster redirections (MOVED, ASK).
    pub redirections: u64,
}

impl Acks {
    /// Adds another connection's acknowledgements.
    pub fn add(&mut self, o: Acks) {
        self.replies += o.replies;
        self.reached += o.reached;
        self.errors += o.errors;
        self.redirections += o.redirections;
    }
}

/// One producer's connection: queue messages, then write them in one go.
#[allow(async_fn_in_trait)]
pub trait ProducerConn {
    /// Appends one message to the pending write; `payload_len` bytes in all.
    fn queue(&mut self, channel: u32, header: &Header);
    /// Writes everything queued in one pipelined write.
    fn flush(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Resolves when the connection has failed (closed by the server, or no
    /// reply for too long); pending while it is healthy. Lets an idle producer
    /// notice a dead server without waiting for its next write.
    fn failure(&mut self) -> impl Future<Output = ConnError>;
    /// Marks which messages (by index on this connection) are in the measured phase,
    /// so that acknowledgements are counted for those only.
    fn set_measured(&mut self, first: u64, end: u64);
    /// Waits (at most `timeout`) for the replies to every message written, and
    /// returns what was acknowledged.
    fn finish(self, timeout: std::time::Duration) -> impl Future<Output = Result<Acks, ConnError>>;
}

/// One consumer's connection: fill a buffer from the socket, then take the
/// messages from it one by one. A consumer that stops taking stops reading, so
/// a slow consumer is slow where Redis can see it.
#[allow(async_fn_in_trait)]
pub trait ConsumerConn {
    /// The next complete message already read, if any.
    fn next(&mut self) -> Result<Option<Delivery<'_>>, ConnError>;
    /// Reads more bytes from the socket (waits until some arrive).
    fn fill(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Asks the server to stop sending (a graceful leave); messages already on
    /// their way still arrive through [`ConsumerConn::next`] until
    /// [`ConsumerConn::has_left`] turns true.
    fn start_leaving(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Whether the server confirmed the leave.
    fn has_left(&self) -> bool;
}
