//! Unit tests of the frame inspector: pass-through, splitting at every byte, limits, control
//! frames, pongs to Portico's own pings, and the frames Portico builds.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;

/// A frame as a client (masked) or server (unmasked) would send it.
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [1, 2, 3, 4];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Feeds `input` in pieces of `step` bytes; returns the output and every event.
fn run(ins: &mut Inspector, input: &[u8], step: usize) -> (Vec<u8>, Vec<Event>) {
    let mut out = Vec::new();
    let mut events = Vec::new();
    let now = Instant::now();
    for chunk in input.chunks(step) {
        let mut used = 0;
        while used < chunk.len() {
            let (n, ev) = ins.feed(&chunk[used..], &mut out, now);
            used += n;
            events.extend(ev);
        }
    }
    (out, events)
}

#[test]
fn frames_pass_unchanged_whatever_the_split() {
    let mut input = frame(false, OP_TEXT, b"hello ", true);
    input.extend(frame(true, OP_PING, b"p", true));
    input.extend(frame(true, OP_CONTINUATION, &[7u8; 300], true));
    input.extend(frame(true, OP_BINARY, &[9u8; 70_000], true));
    input.extend(frame(true, OP_CLOSE, &[3, 232, b'o', b'k'], true));
    for step in [1, 2, 3, 7, 64, 1 << 20] {
        let mut ins = Inspector::new(true, 1 << 20, None, Instant::now());
        let (out, events) = run(&mut ins, &input, step);
        assert_eq!(out, input, "step {step}");
        assert_eq!(events, [Event::Close(Some(1000))], "step {step}");
        assert_eq!(ins.messages, 2);
    }
}

#[test]
fn oversized_message_is_refused_before_its_bytes_pass() {
    let mut ins = Inspector::new(false, 100, None, Instant::now());
    let mut input = frame(false, OP_TEXT, &[b'a'; 60], false);
    input.extend(frame(true, OP_CONTINUATION, &[b'a'; 60], false));
    let (out, events) = run(&mut ins, &input, 1000);
    assert_eq!(out, frame(false, OP_TEXT, &[b'a'; 60], false));
    assert_eq!(
        events,
        [Event::Violation(MESSAGE_TOO_BIG, "message too big")]
    );
}

#[test]
fn message_rate_is_limited() {
    let start = Instant::now();
    let mut ins = Inspector::new(true, 1000, Some(2), start);
    let one = frame(true, OP_TEXT, b"x", true);
    let mut out = Vec::new();
    assert_eq!(ins.feed(&one, &mut out, start).1, None);
    assert_eq!(ins.feed(&one, &mut out, start).1, None);
    assert_eq!(
        ins.feed(&one, &mut out, start).1,
        Some(Event::Violation(POLICY_VIOLATION, "too many messages"))
    );
    let mut later = Inspector::new(true, 1000, Some(2), start);
    for i in 0..10 {
        let now = start + Duration::from_millis(500 * i);
        assert_eq!(later.feed(&one, &mut out, now).1, None, "message {i}");
    }
}

#[test]
fn protocol_errors() {
    let cases: Vec<(bool, Vec<u8>)> = vec![
        (true, frame(true, OP_TEXT, b"x", false)),
        (false, frame(true, OP_TEXT, b"x", true)),
        (true, frame(true, OP_CONTINUATION, b"x", true)),
        (true, frame(false, OP_PING, b"x", true)),
        (true, frame(true, 0x3, b"x", true)),
        (
            true,
            [
                frame(false, OP_TEXT, b"x", true),
                frame(true, OP_TEXT, b"x", true),
            ]
            .concat(),
        ),
        (true, vec![0xC1, 0x81, 0, 0, 0, 0, 0]),
    ];
    for (from_client, input) in cases {
        let mut ins = Inspector::new(from_client, 1000, None, Instant::now());
        let (_, events) = run(&mut ins, &input, 1000);
        assert!(
            matches!(events.as_slice(), [Event::Violation(PROTOCOL_ERROR, _)]),
            "{input:?}: {events:?}"
        );
    }
}

#[test]
fn keepalive_pongs_stay_with_portico() {
    let mut ins = Inspector::new(true, 1000, None, Instant::now());
    let mut input = frame(true, OP_PONG, KEEPALIVE_PAYLOAD, true);
    input.extend(frame(true, OP_PONG, b"app", true));
    let (out, _) = run(&mut ins, &input, 5);
    assert_eq!(out, frame(true, OP_PONG, b"app", true));
}

#[test]
fn closing_drops_data_and_absorbs_close() {
    let mut ins = Inspector::new(true, 1000, None, Instant::now());
    ins.closing = true;
    let mut input = frame(true, OP_TEXT, b"late", true);
    input.extend(frame(true, OP_CLOSE, &1001u16.to_be_bytes(), true));
    let (out, events) = run(&mut ins, &input, 3);
    assert!(out.is_empty());
    assert_eq!(events, [Event::Close(Some(1001))]);
}

#[test]
fn boundary_is_known() {
    let mut ins = Inspector::new(false, 1000, None, Instant::now());
    let f = frame(true, OP_BINARY, &[1; 10], false);
    let mut out = Vec::new();
    ins.feed(&f[..5], &mut out, Instant::now());
    assert!(!ins.at_boundary());
    ins.feed(&f[5..], &mut out, Instant::now());
    assert!(ins.at_boundary());
}

#[test]
fn built_frames_parse_back() {
    let to_client = close_frame(1009, "message too big", false);
    let mut ins = Inspector::new(false, 1000, None, Instant::now());
    assert_eq!(run(&mut ins, &to_client, 1).1, [Event::Close(Some(1009))]);
    let to_backend = close_frame(1001, "going away", true);
    let mut ins = Inspector::new(true, 1000, None, Instant::now());
    let (out, events) = run(&mut ins, &to_backend, 2);
    assert_eq!(events, [Event::Close(Some(1001))]);
    assert_eq!(out, to_backend);
    let ping = keepalive_ping();
    assert_eq!(ping[0], 0x89);
    assert_eq!(&ping[2..], KEEPALIVE_PAYLOAD);
}
