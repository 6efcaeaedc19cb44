//! Server-sent events: splits a byte stream into events (`event:` name and joined `data:` lines).

/// One event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Feeds bytes in, takes whole events out. Lines may be split across chunks. Each byte is
/// scanned for a line end once (a pushed chunk is searched from where the last search stopped), and
/// a line longer than the parser's cap is an error rather than an ever-growing buffer.
pub(crate) struct Parser {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    max_line: usize,
    current: Event,
    has_data: bool,
}

/// A line longer than the parser's cap.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LineTooLong(pub(crate) usize);

impl Parser {
    /// A parser refusing lines longer than `max_line` bytes.
    pub(crate) fn new(max_line: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            scanned: 0,
            max_line,
            current: Event::default(),
            has_data: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, LineTooLong> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(rel) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            let end = self.scanned + rel;
            self.line(start, end, &mut out);
            start = end + 1;
            self.scanned = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > self.max_line {
            return Err(LineTooLong(self.max_line));
        }
        Ok(out)
    }

    fn line(&mut self, start: usize, end: usize, out: &mut Vec<Event>) {
        let line = String::from_utf8_lossy(&self.buf[start..end]);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if self.has_data || self.current.event.is_some() {
                out.push(std::mem::take(&mut self.current));
                self.has_data = false;
            }
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.current.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_chunks() {
        let mut p = Parser::new(1024);
        assert!(
            p.push(b"event: message_start\ndata: {\"a\"")
                .expect("short")
                .is_empty()
        );
        let ev = p.push(b":1}\n\n: ping\n\ndata: [DONE]\n\n").expect("short");
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].data, "[DONE]");
    }

    #[test]
    fn a_line_longer_than_the_cap_is_refused_and_long_lines_are_scanned_once() {
        let mut p = Parser::new(100);
        assert_eq!(p.push(&[b'x'; 60]).expect("under the cap").len(), 0);
        assert_eq!(p.push(&[b'x'; 60]), Err(LineTooLong(100)));
        // A line split into many chunks, each scanned once: 10 MB in 1 KiB pieces stays linear.
        let mut p = Parser::new(20 << 20);
        let chunk = [b'y'; 1024];
        p.push(b"data: ").expect("short");
        for _ in 0..10_240 {
            assert!(p.push(&chunk).expect("under the cap").is_empty());
        }
        assert_eq!(p.scanned, p.buf.len(), "nothing is rescanned");
        let ev = p.push(b"\n\n").expect("ends");
        assert_eq!(ev[0].data.len(), 10 << 20);
    }
}
