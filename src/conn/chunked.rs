//! Strict, streaming validator for a chunked request body (RFC 9112 section 7.1), used by
//! `H1Guard`: it never buffers, it only says how many bytes are valid and where the body ends.

use super::h1guard::Rejection;

/// Where the validator stands inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits; `size` accumulates, `digits` says whether any was seen.
    Size { size: u64, digits: bool },
    /// Whitespace after the size, before `;` or CR.
    SizeWs { size: u64 },
    /// Inside a chunk extension, until CR.
    Ext { size: u64 },
    /// Saw CR ending the chunk-size line, LF must follow.
    SizeLf { size: u64 },
    /// Chunk data still to pass.
    Data(u64),
    /// CR expected after chunk data.
    DataCr,
    /// LF expected after chunk data.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Saw CR ending a trailer field line.
    TrailerLf,
    /// Saw CR of the final empty line.
    EndLf,
}

/// The outcome of feeding bytes to the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// All bytes were valid; the body continues.
    More,
    /// The body ended after this many bytes (the rest of the input belongs to the next request).
    Done(usize),
    /// The byte at this offset breaks the framing; bytes before it were valid.
    Bad(usize, Rejection),
}

/// Streaming chunked-body validator.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size {
                size: 0,
                digits: false,
            },
        }
    }

    /// Chunk data bytes that can pass without looking at them, if the validator is inside data.
    pub(crate) fn data_remaining(&self) -> Option<u64> {
        match self.state {
            State::Data(n) if n > 0 => Some(n),
            _ => None,
        }
    }

    /// Accounts for `n` data bytes passed without `feed` (never more than `data_remaining`).
    pub(crate) fn consume_data(&mut self, n: u64) {
        if let State::Data(rem) = self.state {
            let rem = rem.saturating_sub(n);
            self.state = if rem == 0 {
                State::DataCr
            } else {
                State::Data(rem)
            };
        }
    }

    /// Validates `input`, the next bytes of the body.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Step {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(rem) = self.state {
                // Chunk data is only counted, never inspected.
                let avail = (input.len() - i) as u64;
                let take = rem.min(avail);
                i += take as usize;
                self.consume_data(take);
                continue;
            }
            let b = input[i];
            match self.byte(b) {
                Ok(true) => return Step::Done(i + 1),
                Ok(false) => i += 1,
                Err(why) => return Step::Bad(i, why),
            }
        }
        Step::More
    }

    /// One framing byte; `Ok(true)` when it ends the body.
    fn byte(&mut self, b: u8) -> Result<bool, Rejection> {
        use State::*;
        if b == b'\n' && !matches!(self.state, SizeLf { .. } | DataLf | TrailerLf | EndLf) {
            return Err(Rejection::BareLf);
        }
        if b == 0 {
            return Err(Rejection::NulOrCr);
        }
        self.state = match (self.state, b) {
            (Size { size, .. }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = u64::from(hex_value(b));
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(Rejection::BadChunk)?;
                Size { size, digits: true }
            }
            (Size { size, digits: true }, b' ' | b'\t') | (SizeWs { size }, b' ' | b'\t') => {
                SizeWs { size }
            }
            (Size { size, digits: true } | SizeWs { size }, b';') => Ext { size },
            (Size { size, digits: true } | SizeWs { size } | Ext { size }, b'\r') => {
                SizeLf { size }
            }
            (Ext { size }, b) if b == b'\t' || (b >= b' ' && b != 0x7f) => Ext { size },
            (SizeLf { size: 0 }, b'\n') => TrailerStart,
            (SizeLf { size }, b'\n') => Data(size),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size {
                size: 0,
                digits: false,
            },
            (TrailerStart, b'\r') => EndLf,
            (EndLf, b'\n') => return Ok(true),
            (Trailer, b'\r') => TrailerLf,
            (TrailerStart | Trailer, _) => Trailer,
            (TrailerLf, b'\n') => TrailerStart,
            (SizeLf { .. } | TrailerLf | EndLf, _) => return Err(Rejection::NulOrCr),
            _ => return Err(Rejection::BadChunk),
        };
        Ok(false)
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Step {
        Chunked::new().feed(input)
    }

    fn run_bytewise(input: &[u8]) -> Step {
        let mut c = Chunked::new();
        for (i, b) in input.iter().enumerate() {
            match c.feed(std::slice::from_ref(b)) {
                Step::More => {}
                Step::Done(_) => return Step::Done(i + 1),
                Step::Bad(_, why) => return Step::Bad(i, why),
            }
        }
        Step::More
    }

    #[test]
    fn valid_bodies_end_exactly() {
        let cases: [&[u8]; 5] = [
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"A;name=val\r\n0123456789\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
            b"3 ;ext\r\nabc\r\n00\r\n\r\n",
            b"1\r\n\n\r\n0\r\n\r\n",
        ];
        for case in cases {
            let mut with_tail = case.to_vec();
            with_tail.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(run(&with_tail), Step::Done(case.len()), "{case:?}");
            assert_eq!(run_bytewise(case), Step::Done(case.len()), "{case:?}");
        }
    }

    #[test]
    fn partial_body_wants_more() {
        assert_eq!(run(b"5\r\nhel"), Step::More);
        assert_eq!(run(b"0\r\nX: y\r\n"), Step::More);
    }

    #[test]
    fn data_can_be_skipped_without_feeding() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"10\r\n"), Step::More);
        assert_eq!(c.data_remaining(), Some(16));
        c.consume_data(10);
        assert_eq!(c.data_remaining(), Some(6));
        c.consume_data(6);
        assert_eq!(c.data_remaining(), None);
        assert_eq!(c.feed(b"\r\n0\r\n\r\n"), Step::Done(7));
    }

    #[test]
    fn rejects_bad_framing() {
        let cases: [(&[u8], usize, Rejection); 12] = [
            (b"5\nhello", 1, Rejection::BareLf),
            (b"5\r\nhello\n", 8, Rejection::BareLf),
            (b"0\r\nX: y\n", 7, Rejection::BareLf),
            (b"0\r\n\n", 3, Rejection::BareLf),
            (b"g\r\n", 0, Rejection::BadChunk),
            (b"\r\n", 0, Rejection::BadChunk),
            (b";x\r\n", 0, Rejection::BadChunk),
            (b"-1\r\n", 0, Rejection::BadChunk),
            (b"1\r\naX\r\n", 4, Rejection::BadChunk),
            (b"10000000000000000\r\n", 16, Rejection::BadChunk),
            (b"5\rx", 2, Rejection::NulOrCr),
            (b"0\r\nX: \0\r\n\r\n", 6, Rejection::NulOrCr),
        ];
        for (input, at, why) in cases {
            assert_eq!(run(input), Step::Bad(at, why), "{input:?}");
            assert_eq!(run_bytewise(input), Step::Bad(at, why), "{input:?}");
        }
    }

    #[test]
    fn largest_size_is_accepted() {
        assert_eq!(run(b"ffffffffffffffff\r\n"), Step::More);
    }
}
