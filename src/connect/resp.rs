//! A lean RESP2 codec for the two hot operations: pipelined PUBLISH writes and
//! reading subscription pushes.
//!
//! The redis crate builds a `Value` tree (with owned buffers) per reply and its
//! pub/sub stream reads eagerly into an unbounded queue. Here a frame is parsed
//! in place from the connection's read buffer, borrowing its bytes, so the
//! receive path allocates nothing and a consumer reads its socket no faster than
//! it processes. Tests check both directions against the redis crate.

use thiserror::Error;

/// Most items a frame in subscribe mode carries (`pmessage` has four).
const MAX_ITEMS: usize = 4;

/// A protocol violation: the bytes on the connection are not RESP.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed reply from Redis: {0}")]
pub struct RespError(pub &'static str);

/// A non-array reply, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atom<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(&'a [u8]),
    Nil,
}

/// One complete reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Atom(Atom<'a>),
    /// An array of up to four atoms (every push in subscribe mode).
    Array {
        items: [Atom<'a>; MAX_ITEMS],
        len: usize,
    },
    /// An array too large or nested too deep to matter to eventbench; skipped whole.
    Other,
}

impl<'a> Frame<'a> {
    /// The items of an array frame, empty otherwise.
    pub fn items(&self) -> &[Atom<'a>] {
        match self {
            Frame::Array { items, len } => &items[..*len],
            _ => &[],
        }
    }
}

/// Finds the end of the line starting at `at`; returns (line, index after CRLF).
#[inline]
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let cr = rest.iter().position(|&b| b == b'\r')?;
    rest.get(cr + 1)?;
    Some((&rest[..cr], at + cr + 2))
}

#[inline]
fn int(digits: &[u8]) -> Result<i64, RespError> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(RespError("bad integer"));
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(RespError("bad integer"));
        }
        v = v * 10 + (d - b'0') as i64;
    }
    Ok(if neg { -v } else { v })
}

/// The start of a reply: an atom, or the length of an array whose items follow.
enum Head<'a> {
    Atom(Atom<'a>),
    Array(i64),
}

/// Parses one atom or array header at `at`, returning it and the index after
/// it. `Ok(None)`: more bytes are needed.
#[inline]
fn atom(buf: &[u8], at: usize) -> Result<Option<(Head<'_>, usize)>, RespError> {
    let Some(&kind) = buf.get(at) else { return Ok(None) };
    let Some((text, after)) = line(buf, at + 1) else { return Ok(None) };
    Ok(Some(match kind {
        b'+' => (Head::Atom(Atom::Simple(text)), after),
        b'-' => (Head::Atom(Atom::Error(text)), after),
        b':' => (Head::Atom(Atom::Int(int(text)?)), after),
        b'$' => {
            let n = int(text)?;
            if n < 0 {
                (Head::Atom(Atom::Nil), after)
            } else {
                let end = after + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError("bulk string not terminated by CRLF"));
                }
                (Head::Atom(Atom::Bulk(&buf[after..end])), end + 2)
            }
        }
        b'*' => (Head::Array(int(text)?), after),
        _ => return Err(RespError("unknown type byte")),
    }))
}

/// Skips a whole reply at `at` (arrays recursively). `Ok(None)`: incomplete.
fn skip(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, RespError> {
    if depth > 8 {
        return Err(RespError("arrays nested too deep"));
    }
    match atom(buf, at)? {
        None => Ok(None),
        Some((Head::Atom(_), after)) => Ok(Some(after)),
        Some((Head::Array(n), mut after)) => {
            for _ in 0..n.max(0) {
                match skip(buf, after, depth + 1)? {
                    None => return Ok(None),
                    Some(a) => after = a,
                }
            }
            Ok(Some(after))
        }
    }
}

/// Parses the first complete reply in `buf`.
///
/// Returns the frame and how many bytes it took, or `Ok(None)` when `buf`
/// holds only part of a reply.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, RespError> {
    let (head, mut after) = match atom(buf, 0)? {
        None => return Ok(None),
        Some(x) => x,
    };
    let n = match head {
        Head::Atom(a) => return Ok(Some((Frame::Atom(a), after))),
        Head::Array(n) if n < 0 => return Ok(Some((Frame::Atom(Atom::Nil), after))),
        Head::Array(n) => n as usize,
    };
    if n > MAX_ITEMS {
        return Ok(skip(buf, 0, 0)?.map(|end| (Frame::Other, end)));
    }
    let mut items = [Atom::Nil; MAX_ITEMS];
    for item in items.iter_mut().take(n) {
        match atom(buf, after)? {
            None => return Ok(None),
            Some((Head::Atom(a), next)) => {
                *item = a;
                after = next;
            }
            Some((Head::Array(_), _)) => return Ok(skip(buf, 0, 0)?.map(|end| (Frame::Other, end))),
        }
    }
    Ok(Some((Frame::Array { items, len: n }, after)))
}

/// How every Pub/Sub `message` push starts, up to the channel name's length.
const MESSAGE_HEAD: &[u8] = b"*3\r\n$7\r\nmessage\r\n$";

/// A decimal length of at most 9 digits at `at`, followed by CRLF; returns it
/// and the index after the CRLF. `None` for anything else, complete or not.
#[inline(always)]
fn length(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    let mut i = at;
    while let Some(&d) = buf.get(i) {
        if !d.is_ascii_digit() || i - at == 9 {
            break;
        }
        n = n * 10 + (d - b'0') as usize;
        i += 1;
    }
    (i > at && buf.get(i..i + 2)? == b"\r\n").then_some((n, i + 2))
}

/// The fast path for what nearly every byte a consumer reads is: a complete
/// `message` push (`*3 $7 message $n channel $m payload`). Returns the
/// payload's range in `buf` and the length of the frame, or `None` when `buf`
/// does not start with a complete, well-formed one; [`parse`] then decides
/// what it is (another frame, an incomplete one, or an error).
#[inline]
pub fn message_push(buf: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
    if !buf.starts_with(MESSAGE_HEAD) {
        return None;
    }
    let (channel_len, channel_at) = length(buf, MESSAGE_HEAD.len())?;
    let channel_end = channel_at + channel_len;
    if buf.get(channel_end..channel_end + 3)? != b"\r\n$" {
        return None;
    }
    let (len, at) = length(buf, channel_end + 3)?;
    let end = at + len;
    (buf.get(end..end + 2)? == b"\r\n").then_some((at..end, end + 2))
}

/// The fast path for a non-negative integer reply (`:n`), PUBLISH's answer.
/// Returns it and its length, or `None` when `buf` does not start with a
/// complete one; [`parse`] then decides.
#[inline]
pub fn integer(buf: &[u8]) -> Option<(i64, usize)> {
    if buf.first() != Some(&b':') {
        return None;
    }
    length(buf, 1).map(|(n, used)| (n as i64, used))
}

/// Appends a command in RESP form (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal, without allocating (a message's length goes through it).
#[inline]
pub fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Everything of a command before its last argument's length: the leading
/// arguments, with the count of the payload that follows. Built once per
/// channel; each message adds its payload's `$len` and bytes.
pub fn command_head(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, args);
    // One more argument than encoded: the payload follows.
    let count = (args.len() + 1).to_string();
    out.splice(1..1 + (args.len()).to_string().len(), count.bytes());
    out
}

/// Everything of a command before its last argument, the payload, for fixed
/// leading arguments and payload length; built once, copied per message.
pub fn fixed_prefix(args: &[&[u8]], payload_len: usize) -> Vec<u8> {
    let mut out = command_head(args);
    out.push(b'$');
    push_decimal(&mut out, payload_len);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn as_value(frame: &Frame) -> Value {
        fn atom(a: &Atom) -> Value {
            match a {
                Atom::Simple(s) => Value::SimpleString(String::from_utf8_lossy(s).into()),
                Atom::Error(_) => Value::Nil,
                Atom::Int(i) => Value::Int(*i),
                Atom::Bulk(b) => Value::BulkString(b.to_vec()),
                Atom::Nil => Value::Nil,
            }
        }
        match frame {
            Frame::Atom(a) => atom(a),
            Frame::Array { .. } => Value::Array(frame.items().iter().map(atom).collect()),
            Frame::Other => Value::Okay,
        }
    }

    #[test]
    fn publish_prefix_matches_the_redis_crate() {
        let payload = vec![7u8; 100];
        let mut ours = fixed_prefix(&[b"PUBLISH", b"eb:ch:0"], payload.len());
        ours.extend_from_slice(&payload);
        ours.extend_from_slice(b"\r\n");
        let theirs = redis::cmd("PUBLISH").arg("eb:ch:0").arg(&payload).get_packed_command();
        assert_eq!(ours, theirs);

        let args: [&[u8]; 10] = [b"XADD", b"k", b"MAXLEN", b"~", b"1000", b"*", b"d", b"1", b"2", b"3"];
        let mut ours = fixed_prefix(&args, payload.len());
        ours.extend_from_slice(&payload);
        ours.extend_from_slice(b"\r\n");
        let theirs = redis::cmd("XADD").arg(&args[1..]).arg(&payload).get_packed_command();
        assert_eq!(ours, theirs, "ten arguments and more");

        let mut ours = Vec::new();
        encode_command(&mut ours, &[b"SUBSCRIBE", b"a", b"bc"]);
        assert_eq!(ours, redis::cmd("SUBSCRIBE").arg("a").arg("bc").get_packed_command());
    }

    #[test]
    fn pushes_parse_as_the_redis_crate_parses_them() {
        let cases: &[&[u8]] = &[
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n",
            b"*4\r\n$8\r\npmessage\r\n$3\r\nch*\r\n$3\r\nch1\r\n$0\r\n\r\n",
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
            b":12345\r\n",
            b":-3\r\n",
            b"+OK\r\n",
            b"$-1\r\n",
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        ];
        for bytes in cases {
            let (frame, used) = parse(bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
            let theirs = redis::parse_redis_value(bytes).unwrap();
            let theirs = match theirs {
                Value::Okay => Value::SimpleString("OK".into()),
                v => v,
            };
            assert_eq!(as_value(&frame), theirs, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more() {
        let bytes = b"*4\r\n$8\r\npmessage\r\n$3\r\nch*\r\n$3\r\nch1\r\n$4\r\nabcd\r\n:7\r\n";
        let first_len = bytes.len() - 4;
        for cut in 0..first_len {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let (_, used) = parse(bytes).unwrap().unwrap();
        assert_eq!(used, first_len);
        assert_eq!(parse(&bytes[used..]).unwrap().unwrap().0, Frame::Atom(Atom::Int(7)));
    }

    #[test]
    fn errors_large_and_nested_arrays() {
        assert_eq!(parse(b"-ERR wrong\r\n").unwrap().unwrap().0, Frame::Atom(Atom::Error(b"ERR wrong")));
        let big = b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n*1\r\n:5\r\n+next\r\n";
        let (f, used) = parse(big).unwrap().unwrap();
        assert_eq!((f, &big[used..]), (Frame::Other, &b"+next\r\n"[..]));
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b":12a\r\n").is_err());
    }

    /// The fast paths agree with the general parser on every frame they
    /// accept, at every cut, and leave everything else to it.
    #[test]
    fn fast_paths_agree_with_the_general_parser() {
        let mut stream = Vec::new();
        let frames: &[&[u8]] = &[
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n",
            b"*3\r\n$7\r\nmessage\r\n$0\r\n\r\n$0\r\n\r\n",
            b"*3\r\n$7\r\nmessage\r\n$12\r\neventbench:0\r\n$64\r\n",
            b"*4\r\n$8\r\npmessage\r\n$3\r\nch*\r\n$3\r\nch1\r\n$1\r\nx\r\n",
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
            b"*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n",
            b":0\r\n",
            b":1234567\r\n",
            b":-3\r\n",
            b":1234567890123\r\n",
            b"-ERR no\r\n",
        ];
        for f in frames {
            stream.extend_from_slice(f);
            if f.ends_with(b"$64\r\n") {
                stream.extend_from_slice(&[b'x'; 64]);
                stream.extend_from_slice(b"\r\n");
            }
        }
        let mut at = 0;
        while at < stream.len() {
            for cut in at..=stream.len() {
                let buf = &stream[at..cut];
                let general = parse(buf).unwrap_or(None);
                if let Some((range, used)) = message_push(buf) {
                    let (frame, general_used) = general.expect("the general parser finds a frame too");
                    assert_eq!(used, general_used);
                    assert!(
                        matches!(frame.items(), [Atom::Bulk(b"message"), _, Atom::Bulk(p)] if *p == &buf[range.clone()])
                    );
                }
                if let Some((n, used)) = integer(buf) {
                    assert_eq!(general, Some((Frame::Atom(Atom::Int(n)), used)));
                }
            }
            at += parse(&stream[at..]).unwrap().unwrap().1;
        }
        // What the fast paths turn down, whole: the general parser's business.
        assert_eq!(message_push(b"*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n"), None);
        assert_eq!(message_push(b"*3\r\n$7\r\nmessage\r\n$2\r\nchX\n$1\r\nx\r\n"), None);
        assert_eq!(message_push(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nxYZ"), None);
        assert_eq!(integer(b":-3\r\n"), None);
        assert_eq!(integer(b":1234567890123\r\n"), None, "longer than the fast path reads");
        assert_eq!(integer(b":12a\r\n"), None);
    }
}
