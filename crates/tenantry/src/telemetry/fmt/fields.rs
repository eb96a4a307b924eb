//! The plain log format's fields, written without colour the way `tracing_subscriber`'s
//! `DefaultFields` writes them (`name=value`, space-separated, strings quoted), at less
//! cost.
//!
//! It writes every event's fields, and, where a subscriber still opens each turn's span,
//! that span's four fields once per call. `DefaultFields` paints each name and each `=`
//! through `nu_ansi_term` even when colour is off: three formatting calls per field where
//! one does. What it treats specially (the message, which it sanitizes; errors, with their
//! sources; raw `r#` names) is handed to it as it is, so the lines do not change.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// [`FormatFields`] for lines without ANSI colour; with colour, `DefaultFields` paints.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            pending: Pending {
                bytes: [0; PENDING],
                len: 0,
            },
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result?;
        visitor.pending.flush(&mut visitor.writer)
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    /// This visitor's own text not yet handed to `writer`.
    pending: Pending,
    /// Whether nothing was written yet (no separating space before the first field).
    is_empty: bool,
    result: fmt::Result,
}

/// How much text a visitor stages before handing it on: a span's four identity fields
/// fit.
const PENDING: usize = 256;

/// Text staged on the stack. The fmt layer formats a span's fields into a `String` that
/// starts empty; handed over in one piece, it grows once instead of at every field.
struct Pending {
    bytes: [u8; PENDING],
    len: usize,
}

impl Pending {
    /// Hands the staged text to `writer`.
    fn flush(&mut self, writer: &mut Writer<'_>) -> fmt::Result {
        let len = std::mem::take(&mut self.len);
        // Only whole `str`s are staged, so this always holds.
        let text = std::str::from_utf8(&self.bytes[..len]).map_err(|_| fmt::Error)?;
        writer.write_str(text)
    }
}

/// Writes into the staged text while it has room, then on to the writer after it.
struct Staged<'a, 'w> {
    pending: &'a mut Pending,
    writer: &'a mut Writer<'w>,
}

impl fmt::Write for Staged<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let Pending { bytes, len } = &mut *self.pending;
        let room = len
            .checked_add(s.len())
            .and_then(|end| bytes.get_mut(*len..end));
        if let Some(room) = room {
            room.copy_from_slice(s.as_bytes());
            *len += s.len();
            Ok(())
        } else {
            self.pending.flush(self.writer)?;
            self.writer.write_str(s)
        }
    }
}

impl PlainVisitor<'_> {
    /// Whether the field is written here: not after an error, not the `log.` metadata
    /// the fmt layer writes itself (`DefaultVisitor` skips it too).
    fn writes(&self, field: &Field) -> bool {
        self.result.is_ok() && !field.name().starts_with("log.")
    }

    /// Whether `DefaultVisitor` has a rule of its own for the field.
    fn special(field: &Field) -> bool {
        let name = field.name();
        name == "message" || name.starts_with("r#")
    }

    /// Hands one field to `DefaultVisitor`, which pads it as this visitor would, after
    /// the text staged so far.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if let Err(e) = self.pending.flush(&mut self.writer) {
            self.result = Err(e);
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.result = default.finish();
        self.is_empty = false;
    }

    /// Records a field: with `default` if `DefaultVisitor` has a rule of its own for it,
    /// else as `name=` and then `value`.
    fn record(
        &mut self,
        field: &Field,
        default: impl FnOnce(&mut DefaultVisitor<'_>),
        value: impl FnOnce(&mut Staged<'_, '_>) -> fmt::Result,
    ) {
        if !self.writes(field) {
            return;
        }
        if Self::special(field) {
            return self.delegate(default);
        }
        self.field(field, value);
    }

    /// Writes `name=` (after a space unless it is the first field), then the value with
    /// `value`.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Staged<'_, '_>) -> fmt::Result) {
        let pad = !std::mem::replace(&mut self.is_empty, false);
        let mut out = Staged {
            pending: &mut self.pending,
            writer: &mut self.writer,
        };
        let name = |out: &mut Staged<'_, '_>| {
            if pad {
                out.write_char(' ')?;
            }
            out.write_str(field.name())?;
            out.write_char('=')
        };
        self.result = name(&mut out).and_then(|()| value(&mut out));
    }
}

/// `value` as `{:?}` writes it: quoted, escaped. Printable ASCII other than `"` and `\`
/// is what `Debug` writes as it is, so such text (names, keys) is copied without a
/// look at each character's escape.
pub(crate) fn write_quoted(out: &mut impl Write, value: &str) -> fmt::Result {
    let as_is = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
    if value.as_bytes().iter().all(as_is) {
        out.write_char('"')?;
        out.write_str(value)?;
        out.write_char('"')
    } else {
        write!(out, "{value:?}")
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(
            field,
            |d| d.record_str(field, value),
            |out| write_quoted(out, value),
        );
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.writes(field) {
            self.delegate(|d| d.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(
            field,
            |d| d.record_debug(field, value),
            |out| write!(out, "{value:?}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::PlainFields;
    use proptest::prelude::*;
    use std::io;
    use tenantry_testing::LogLines;
    use tracing_subscriber::fmt::format::DefaultFields;

    #[derive(Debug)]
    struct Failure {
        source: io::Error,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the store is down")
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    /// Emits the same events and spans under `DefaultFields` and under [`PlainFields`],
    /// both without colour, and returns the two outputs.
    fn both(emit: impl Fn()) -> (String, String) {
        let writer = |lines: &LogLines| {
            let lines = lines.clone();
            move || lines.clone()
        };
        let default = LogLines::default();
        let plain = LogLines::default();
        let with_default = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(DefaultFields::new())
            .with_writer(writer(&default))
            .finish();
        let with_plain = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(PlainFields)
            .with_writer(writer(&plain))
            .finish();
        tracing::subscriber::with_default(with_default, &emit);
        tracing::subscriber::with_default(with_plain, &emit);
        (default.text(), plain.text())
    }

    #[test]
    fn plain_fields_write_what_the_default_fields_write_without_colour() {
        let (default, plain) = both(|| {
            let partition = "acme";
            let span = tracing::info_span!(
                "handler",
                partition = %partition,
                manager = %"tenant-db",
                key = %"k\"1",
                handler = "query"
            );
            let _in = span.enter();
            tracing::info!(limit = 3, ok = true, ratio = 0.5, "ran \"{}\"", "select");
            tracing::warn!(r#type = "x", said = "say \"hi\"", name = ?Some("y"), "\u{1b}[31mred");
            let failure = Failure {
                source: io::Error::other("connection refused"),
            };
            tracing::error!(
                error = &failure as &(dyn std::error::Error + 'static),
                "failed"
            );
            tracing::info!(message = "only a message");
            tracing::info!(empty = "", "");
            // Past the staged text's room, in one field and over several.
            let long = "y".repeat(300);
            tracing::info!(long = %long, after = "z", "long");
            let parts = "p".repeat(120);
            tracing::info!(a = %parts, b = parts.as_str(), c = ?parts, d = 1, "parts");
            tracing::info_span!("wide", a = %parts, b = %parts, c = parts.as_str())
                .in_scope(|| tracing::info!("in a wide span"));
            span.record("handler", "other");
            tracing::info!(tail = -7i64, "after a record");
        });
        assert!(default.contains("handler{partition=acme"), "{default}");
        assert!(default.contains("error=the store is down"), "{default}");
        assert_eq!(plain, default);
    }

    proptest! {
        #[test]
        fn plain_fields_match_the_default_fields_for_any_text(
            text in ".{0,40}",
            message in ".{0,40}",
            ascii in "[ -~]{0,30}",
            number in any::<i64>(),
        ) {
            let (default, plain) = both(|| {
                let span = tracing::info_span!("turn", key = %text, name = text.as_str());
                let _in = span.enter();
                tracing::info!(
                    field = text.as_str(),
                    printable = ascii.as_str(),
                    shown = %text,
                    number,
                    "{message}"
                );
            });
            prop_assert_eq!(plain, default);
        }
    }
}
