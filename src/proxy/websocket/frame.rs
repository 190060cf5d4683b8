//! A streaming WebSocket frame inspector (RFC 6455 §5) for message-policy mode: frames are
//! passed on unchanged as they arrive, only headers and control frames (at most 125 bytes of
//! payload) are buffered, so a large message never sits in memory whole.

use std::time::Instant;

/// Close codes Portico sends itself.
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const POLICY_VIOLATION: u16 = 1008;
pub const MESSAGE_TOO_BIG: u16 = 1009;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Payload of the pings Portico sends, so their pongs can be recognised and kept to itself.
pub const KEEPALIVE_PAYLOAD: &[u8] = b"portico-keepalive";

/// What one call to `Inspector::feed` stopped at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Close frame went by (or was absorbed while closing), with its status code if any.
    Close(Option<u16>),
    /// The peer broke the policy or the protocol: close with this code and reason.
    Violation(u16, &'static str),
}

/// Messages per second, as a token bucket refilled continuously.
#[derive(Debug)]
struct Rate {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Rate {
    fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
enum State {
    /// Collecting a frame header; `len` bytes of `buf` are filled.
    Header { buf: [u8; 14], len: u8 },
    /// Passing `remaining` payload bytes of a data frame.
    Payload { remaining: u64 },
    /// Collecting a whole control frame (header included) before deciding on it.
    Control { frame: Vec<u8>, need: usize },
    /// Nothing more is read: the stream broke the rules.
    Dead,
}

/// Reads one direction's frames. Data frames go to `out` unless the tunnel is closing;
/// control frames go through whole, except the pongs answering Portico's own pings.
#[derive(Debug)]
pub struct Inspector {
    /// Frames from the client must be masked, frames from the backend must not.
    from_client: bool,
    max_message: u64,
    rate: Option<Rate>,
    state: State,
    /// Payload bytes of the message being received (all its fragments so far).
    message_len: u64,
    in_message: bool,
    /// The current data frame is being dropped (the tunnel is closing).
    dropping: bool,
    /// After Portico started closing: data is dropped, the peer's Close is absorbed.
    pub closing: bool,
    /// Whole messages seen.
    pub messages: u64,
}

impl Inspector {
    pub fn new(from_client: bool, max_message: u64, per_second: Option<u32>, now: Instant) -> Self {
        Self {
            from_client,
            max_message,
            rate: per_second.map(|n| Rate {
                per_second: f64::from(n),
                tokens: f64::from(n),
                last: now,
            }),
            state: State::Header {
                buf: [0; 14],
                len: 0,
            },
            message_len: 0,
            in_message: false,
            dropping: false,
            closing: false,
            messages: 0,
        }
    }

    /// True between frames: a frame may be injected into the output here.
    pub fn at_boundary(&self) -> bool {
        !matches!(self.state, State::Payload { .. })
    }

    /// Consumes input up to the first event. Returns how many bytes were used.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        now: Instant,
    ) -> (usize, Option<Event>) {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            match &mut self.state {
                State::Dead => return (input.len(), None),
                State::Payload { remaining } => {
                    let n = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    if !self.dropping {
                        out.extend_from_slice(&rest[..n]);
                    }
                    *remaining -= n as u64;
                    used += n;
                    if *remaining == 0 {
                        self.state = State::Header {
                            buf: [0; 14],
                            len: 0,
                        };
                    }
                }
                State::Control { frame, need } => {
                    let n = rest.len().min(*need - frame.len());
                    frame.extend_from_slice(&rest[..n]);
                    used += n;
                    if frame.len() == *need {
                        let frame = std::mem::take(frame);
                        self.state = State::Header {
                            buf: [0; 14],
                            len: 0,
                        };
                        if let Some(event) = self.control(frame, out) {
                            return (used, Some(event));
                        }
                    }
                }
                State::Header { buf, len } => {
                    let have = usize::from(*len);
                    let want = header_len(&buf[..have]);
                    let n = rest.len().min(want - have);
                    buf[have..have + n].copy_from_slice(&rest[..n]);
                    *len += n as u8;
                    used += n;
                    let have = usize::from(*len);
                    if have < 2 || have < header_len(&buf[..have]) {
                        continue;
                    }
                    let header = *buf;
                    if let Err(event) = self.header(&header[..have], out, now) {
                        self.state = State::Dead;
                        return (input.len(), Some(event));
                    }
                }
            }
        }
        (used, None)
    }

    /// Decides on a complete header: start a data payload or a control frame.
    fn header(&mut self, h: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), Event> {
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0F;
        let masked = h[1] & 0x80 != 0;
        let len = payload_len(h);
        if h[0] & 0x70 != 0 {
            return Err(Event::Violation(PROTOCOL_ERROR, "reserved bits set"));
        }
        if masked != self.from_client {
            return Err(Event::Violation(PROTOCOL_ERROR, "wrong masking"));
        }
        if len >> 63 != 0 {
            return Err(Event::Violation(PROTOCOL_ERROR, "bad frame length"));
        }
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                let starts = opcode != OP_CONTINUATION;
                if starts == self.in_message {
                    return Err(Event::Violation(PROTOCOL_ERROR, "bad fragmentation"));
                }
                // Once Portico has sent its Close, no data may follow it on the wire.
                self.dropping = self.closing;
                if starts {
                    self.message_len = 0;
                    self.in_message = true;
                    if !self.closing {
                        if let Some(rate) = &mut self.rate {
                            if !rate.admit(now) {
                                return Err(Event::Violation(
                                    POLICY_VIOLATION,
                                    "too many messages",
                                ));
                            }
                        }
                    }
                }
                self.message_len = self.message_len.saturating_add(len);
                if self.message_len > self.max_message && !self.dropping {
                    return Err(Event::Violation(MESSAGE_TOO_BIG, "message too big"));
                }
                if fin {
                    self.in_message = false;
                    self.messages += 1;
                }
                if !self.dropping {
                    out.extend_from_slice(h);
                }
                self.state = if len == 0 {
                    State::Header {
                        buf: [0; 14],
                        len: 0,
                    }
                } else {
                    State::Payload { remaining: len }
                };
                Ok(())
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(Event::Violation(PROTOCOL_ERROR, "bad control frame"));
                }
                let mut frame = Vec::with_capacity(h.len() + len as usize);
                frame.extend_from_slice(h);
                let need = h.len() + len as usize;
                if len == 0 {
                    self.state = State::Header {
                        buf: [0; 14],
                        len: 0,
                    };
                    return self.control(frame, out).map_or(Ok(()), Err);
                }
                self.state = State::Control { frame, need };
                Ok(())
            }
            _ => Err(Event::Violation(PROTOCOL_ERROR, "unknown opcode")),
        }
    }

    /// Handles a complete control frame; returns a Close event when one went by.
    fn control(&mut self, frame: Vec<u8>, out: &mut Vec<u8>) -> Option<Event> {
        let opcode = frame[0] & 0x0F;
        let payload = unmasked_payload(&frame);
        match opcode {
            OP_CLOSE => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                if !self.closing {
                    out.extend_from_slice(&frame);
                }
                Some(Event::Close(code))
            }
            OP_PONG if self.from_client && payload == KEEPALIVE_PAYLOAD => None,
            _ => {
                if !self.closing {
                    out.extend_from_slice(&frame);
                }
                None
            }
        }
    }
}

/// Header length implied by the bytes so far (2 until the length byte is known).
fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 {
        return 2;
    }
    let ext = match h[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if h[1] & 0x80 != 0 { 4 } else { 0 }
}

fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[2..10]);
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    }
}

/// The payload of a complete (small) frame, unmasked.
fn unmasked_payload(frame: &[u8]) -> Vec<u8> {
    let hl = header_len(frame);
    let mut payload = frame[hl..].to_vec();
    if frame[1] & 0x80 != 0 {
        let key = &frame[hl - 4..hl];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    payload
}

/// A control frame Portico sends: masked towards the backend (Portico is its client).
pub fn control_frame(opcode: u8, payload: &[u8], to_backend: bool) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let mut frame = Vec::with_capacity(6 + payload.len());
    frame.push(0x80 | opcode);
    if to_backend {
        let mut key = [0u8; 4];
        // Masking keys must be unpredictable (RFC 6455 §10.3); a fixed key is a last resort.
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            key = [0x5a, 0x1c, 0x93, 0x2e];
        }
        frame.push(0x80 | payload.len() as u8);
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.push(payload.len() as u8);
        frame.extend_from_slice(payload);
    }
    frame
}

/// A Close frame with `code` and a short `reason`.
pub fn close_frame(code: u16, reason: &str, to_backend: bool) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    control_frame(OP_CLOSE, &payload, to_backend)
}

/// A keepalive Ping towards the client.
pub fn keepalive_ping() -> Vec<u8> {
    control_frame(OP_PING, KEEPALIVE_PAYLOAD, false)
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
