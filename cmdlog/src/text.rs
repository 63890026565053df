//! Making text from a log safe to print: a log is written by an attacker,
//! and its strings end up in messages that a person reads on a terminal or
//! in a CI page. [`printable`] escapes control characters and bidirectional
//! overrides (so a value cannot forge a line of output, reorder what is
//! shown, or send terminal escapes) and shortens long text
//! (so a 100 KiB argument does not flood the screen).

use std::borrow::Cow;

/// The most characters of one message [`printable`] keeps by default.
pub const MAX_PRINTED_CHARS: usize = 2_000;

/// `text` with every control character escaped (`\n`, `\u{1b}`, ...) and,
/// past `max_chars` characters, cut with a note of how much was left out.
pub fn printable(text: &str, max_chars: usize) -> Cow<'_, str> {
    let clean = !text.chars().any(hidden);
    if clean && text.len() <= max_chars {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max_chars + 64));
    for (kept, (at, c)) in text.char_indices().enumerate() {
        if kept == max_chars {
            let left = text.len() - at;
            out.push_str(&format!("... ({left} more bytes)"));
            break;
        }
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Characters that change how the rest of a line looks rather than show
/// themselves: control characters, bidirectional overrides and isolates
/// (which can reorder what a reader sees), and line or paragraph separators.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(printable("opt -O2 `a.bc`", 100), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_escapes() {
        let forged = "x\nrefused: 0 allowed\u{1b}[31m\r\t";
        let shown = printable(forged, 100);
        assert_eq!(shown, "x\\nrefused: 0 allowed\\u{1b}[31m\\r\\t");
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn bidi_overrides_and_separators_are_escaped() {
        let shown = printable("a\u{202E}cba\u{2066}x\u{2028}y", 100);
        assert_eq!(shown, "a\\u{202e}cba\\u{2066}x\\u{2028}y");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(10);
        assert_eq!(printable(&text, 3), "ééé... (14 more bytes)");
        assert_eq!(printable(&text, 10), text);
    }
}
