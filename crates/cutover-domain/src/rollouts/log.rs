//! A task's kept output: its first and last bytes, at most [`MAX_TASK_LOG_BYTES`], with one
//! marker where bytes were cut. The one place that knows the bound and the marker: the command
//! executor streams a program's output through a [`TaskLog`], the store bounds what webhooks
//! append with [`bound_log`], and a log bounded twice still has one marker with the whole count.

use std::collections::VecDeque;

/// Most bytes of a task's log kept (without the marker): half from the head, half from the tail.
pub const MAX_TASK_LOG_BYTES: usize = 64 * 1024;

const MARKER_OPEN: &str = "\n[… ";
const MARKER_CLOSE: &str = " bytes cut …]\n";

fn marker(cut: usize) -> String {
    format!("{MARKER_OPEN}{cut}{MARKER_CLOSE}")
}

/// Output being kept, bounded as it arrives: memory never holds more than the bound.
#[derive(Debug, Clone)]
pub struct TaskLog {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    cut: usize,
    /// Most bytes the head takes: half the limit, or what it had when bytes were cut.
    head_room: usize,
    tail_room: usize,
}

impl Default for TaskLog {
    fn default() -> Self {
        Self::with_limit(MAX_TASK_LOG_BYTES)
    }
}

impl TaskLog {
    /// A log that keeps at most `limit` bytes (tests use small ones).
    pub fn with_limit(limit: usize) -> Self {
        Self { head: Vec::new(), tail: VecDeque::new(), cut: 0, head_room: limit / 2, tail_room: limit / 2 }
    }

    /// A log already kept (perhaps bounded before, with its marker), to append to.
    pub fn resume(kept: &str) -> Self {
        Self::resume_with_limit(kept, MAX_TASK_LOG_BYTES)
    }

    fn resume_with_limit(kept: &str, limit: usize) -> Self {
        let mut log = Self::with_limit(limit);
        match split_at_marker(kept) {
            Some((head, cut, tail)) => {
                log.push(head.as_bytes());
                log.skip(cut);
                log.push(tail.as_bytes());
            }
            None => log.push(kept.as_bytes()),
        }
        log
    }

    /// Appends output.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.head_room.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        self.tail.extend(rest);
        let over = self.tail.len().saturating_sub(self.tail_room);
        if over > 0 {
            self.tail.drain(..over);
            self.cut += over;
        }
    }

    /// Records that `n` bytes were cut here. The head takes nothing more, and what the tail held
    /// before them is cut too, so that what is kept stays two runs of the output around one cut.
    fn skip(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.head_room = self.head.len();
        self.cut += n + self.tail.len();
        self.tail.clear();
    }

    /// Appends another log after this one (a program's stderr after its stdout).
    pub fn append(&mut self, other: TaskLog) {
        self.push(&other.head);
        self.skip(other.cut);
        let (front, back) = other.tail.as_slices();
        self.push(front);
        self.push(back);
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.cut == 0
    }

    /// Whether the output ends with `byte` (nothing cut after it).
    pub fn ends_with(&self, byte: u8) -> bool {
        self.tail.back().or(self.head.last()).is_some_and(|&last| last == byte)
    }

    /// The kept text: invalid UTF-8 and NUL bytes replaced (U+FFFD; PostgreSQL's text refuses
    /// NUL), a character split by the cut dropped whole and counted, and the marker saying how
    /// many bytes were cut.
    pub fn into_string(self) -> String {
        let text = self.into_string_with_nul();
        if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text }
    }

    fn into_string_with_nul(self) -> String {
        let Self { mut head, tail, mut cut, .. } = self;
        let mut tail: Vec<u8> = tail.into();
        if cut > 0 {
            // Back to a character boundary at the end of the head, forward at the start of the tail.
            if let Err(e) = std::str::from_utf8(&head)
                && e.error_len().is_none()
            {
                cut += head.len() - e.valid_up_to();
                head.truncate(e.valid_up_to());
            }
            let continuation = tail.iter().take_while(|&&b| b & 0b1100_0000 == 0b1000_0000).count().min(3);
            cut += continuation;
            tail.drain(..continuation);
        }
        if cut == 0 {
            head.extend(tail);
            return String::from_utf8_lossy(&head).into_owned();
        }
        let mut text = String::from_utf8_lossy(&head).into_owned();
        text.push_str(&marker(cut));
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

/// The marker of a bounded log: what is before it, how many bytes it stands for, what is after.
fn split_at_marker(log: &str) -> Option<(&str, usize, &str)> {
    let start = log.find(MARKER_OPEN)?;
    let rest = &log[start + MARKER_OPEN.len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let cut = rest[..digits].parse().ok()?;
    let after = rest[digits..].strip_prefix(MARKER_CLOSE)?;
    Some((&log[..start], cut, after))
}

/// `log` bounded to [`MAX_TASK_LOG_BYTES`]: its head and tail with one marker between. A log
/// bounded before keeps its one marker, counting every byte cut.
pub fn bound_log(log: &str) -> String {
    TaskLog::resume(log).into_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn kept(limit: usize, parts: &[&[u8]]) -> String {
        let mut log = TaskLog::with_limit(limit);
        for part in parts {
            log.push(part);
        }
        log.into_string()
    }

    #[test]
    fn nul_bytes_are_kept_as_the_replacement_character() {
        assert_eq!(kept(10, &[b"a\0b"]), "a\u{fffd}b");
        assert_eq!(bound_log("x\0y\n"), "x\u{fffd}y\n");
        assert_eq!(kept(4, &[b"\0\0", b"cut", b"\0"]), "\0\0\n[… 2 bytes cut …]\nt\0".replace('\0', "\u{fffd}"));
    }

    #[test]
    fn a_short_log_is_kept_whole_without_a_marker() {
        assert_eq!(kept(10, &[b"hello", b"!"]), "hello!");
        assert_eq!(bound_log("line\n"), "line\n");
    }

    #[test]
    fn a_long_log_keeps_its_head_and_tail_around_one_marker_with_the_count() {
        assert_eq!(kept(8, &[b"abcdefghij", b"klmnop"]), "abcd\n[… 8 bytes cut …]\nmnop");
        let half = MAX_TASK_LOG_BYTES / 2;
        let long = "x".repeat(MAX_TASK_LOG_BYTES) + "end";
        assert_eq!(bound_log(&long), "x".repeat(half) + &marker(3) + &"x".repeat(half - 3) + "end");
    }

    #[test]
    fn bounding_twice_keeps_one_marker_counting_every_cut_byte() {
        let once = TaskLog::resume_with_limit("abcdefghijkl", 8).into_string();
        assert_eq!(once, "abcd\n[… 4 bytes cut …]\nijkl");
        let mut again = TaskLog::resume_with_limit(&once, 8);
        again.push(b"mn");
        assert_eq!(again.into_string(), "abcd\n[… 6 bytes cut …]\nklmn");
    }

    #[test]
    fn stderr_after_a_cut_stdout_leaves_one_marker() {
        let mut stdout = TaskLog::with_limit(8);
        stdout.push(b"0123456789");
        let mut stderr = TaskLog::with_limit(8);
        stderr.push(b"E1");
        stdout.append(stderr);
        assert_eq!(stdout.into_string(), "0123\n[… 4 bytes cut …]\n89E1");

        // And when stderr was cut too: still one marker, with every byte counted.
        let mut stdout = TaskLog::with_limit(8);
        stdout.push(b"0123456789");
        let mut stderr = TaskLog::with_limit(8);
        stderr.push(b"abcdefghij");
        stdout.append(stderr);
        assert_eq!(stdout.into_string(), "0123\n[… 12 bytes cut …]\nghij");
    }

    #[test]
    fn a_character_split_by_the_cut_is_dropped_whole_and_counted() {
        // "é" is two bytes: the head would end inside the first, the tail start inside the last.
        let text = "aaaaé".to_owned() + "bb" + "écccc";
        let bounded = kept(10, &[text.as_bytes()]);
        assert_eq!(bounded, "aaaa\n[… 6 bytes cut …]\ncccc");
    }

    proptest! {
        #[test]
        fn kept_logs_stay_bounded_and_count_what_they_cut(text in "[a-zé\n]{0,300}", split in 0usize..300, limit in 4usize..64) {
            let split = (0..=split.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let mut log = TaskLog::with_limit(limit);
            log.push(&text.as_bytes()[..split]);
            log.push(&text.as_bytes()[split..]);
            let out = log.into_string();
            match split_at_marker(&out) {
                None => prop_assert_eq!(&out, &text),
                Some((head, cut, tail)) => {
                    prop_assert!(head.len() + tail.len() <= limit);
                    prop_assert_eq!(head.len() + cut + tail.len(), text.len());
                    prop_assert!(text.starts_with(head) && text.ends_with(tail));
                }
            }
        }
    }
}
