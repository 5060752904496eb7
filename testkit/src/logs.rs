//! Log lines as a test sees them: a writer for a `tracing` subscriber that
//! keeps what it is given, for tests that check what reaches the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything written to it, shared by its clones.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `text` holds any run of `digits` (taken `window` at a time) that
/// a log should not: e.g. 6 consecutive digits of a phone number.
pub fn holds_digits_of(text: &str, digits: &str, window: usize) -> bool {
    let digits: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
    digits
        .windows(window)
        .any(|run| text.contains(&run.iter().collect::<String>()))
}
