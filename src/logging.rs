//! Log output: `tracing` to standard error, the level from `--log-level` or `RUST_LOG`, and every line
//! passed through the secret redactor (see `secret.rs`) so that no secret reaches a log at any level,
//! whoever formatted it.
//!
//! Knows nothing of MQTT or hubs.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Third-party crates silenced by default: the embedded broker logs every ordinary disconnect as an error
/// (`RUST_LOG=rumqttd=info` brings it back).
const DEFAULT_QUIET: &str = "rumqttd=off";

/// Installs the global subscriber. `level` (`error` … `trace`, or a full filter) wins over `RUST_LOG`;
/// with neither, `info`.
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some(level) => EnvFilter::try_new(format!("{level},{DEFAULT_QUIET}")),
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives),
            _ => EnvFilter::try_new(format!("info,{DEFAULT_QUIET}")),
        },
    }
    .unwrap_or_else(|e| {
        eprintln!("invalid log level ({e}); using info");
        EnvFilter::new(format!("info,{DEFAULT_QUIET}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(true)
        .try_init();
}

/// Standard error, with secrets masked. `tracing` formats each event fully before writing it, so one
/// `write` is one whole line and a secret is never split across writes.
#[derive(Clone, Copy)]
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(io::stderr())
    }
}

pub struct Redacting<W>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::secret::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_masks_registered_secrets() {
        crate::secret::register("sess_key=0123456789abcdef");
        let mut out = Redacting(Vec::new());
        out.write_all(b"cookie sess_key=0123456789abcdef; login=1\n").unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), format!("cookie {}; login=1\n", crate::secret::MASK));
    }
}
