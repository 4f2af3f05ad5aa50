//! Text the relay did not write, fit for an operator's terminal.

use std::borrow::Cow;

/// `text` (a message body, a header someone set) with everything that could act on a
/// terminal or fake a line escaped the way Rust writes it: control characters (ESC sequences,
/// newlines, carriage returns), bidirectional overrides and every other character that does
/// not print (`\n`, `\u{1b}`, `\u{202e}`); a backslash is doubled, so that an escape cannot be
/// faked either. Quotes and everything printable (any script) stay as they are; nothing is cut.
pub fn printable(text: &str) -> Cow<'_, str> {
    let plain = text
        .chars()
        .all(|c| c == '"' || c == '\'' || c.escape_debug().len() == 1);
    if plain {
        return Cow::Borrowed(text);
    }
    // `str::escape_debug` knows which characters do not print (and escapes a combining mark
    // only where it opens the text); it also escapes quotes, which are given back here. Every
    // backslash in its output opens an escape, so reading it in pairs is exact.
    let mut out = String::with_capacity(text.len() + 16);
    let mut escaped = text.escape_debug();
    while let Some(c) = escaped.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match escaped.next() {
            Some(quote @ ('"' | '\'')) => out.push(quote),
            Some(next) => {
                out.push('\\');
                out.push(next);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_and_invisible_characters_are_escaped_and_nothing_else() {
        for (raw, shown) in [
            (
                "plain text, \"quoted\" and 'single'",
                "plain text, \"quoted\" and 'single'",
            ),
            ("{\"appid\":\"100023\"}", "{\"appid\":\"100023\"}"),
            ("库存不足 — café", "库存不足 — café"),
            ("a\nid=fake attempts=0", "a\\nid=fake attempts=0"),
            ("\u{1b}[2J\u{1b}[31mred", "\\u{1b}[2J\\u{1b}[31mred"),
            ("back\rspace\ttab\u{7f}", "back\\rspace\\ttab\\u{7f}"),
            ("left\u{202e}thgir", "left\\u{202e}thgir"),
            ("a\\nb", "a\\\\nb"),
            ("e\u{301}", "e\u{301}"),
            ("\u{301}e", "\\u{301}e"),
            ("\u{85}next\u{2028}line", "\\u{85}next\\u{2028}line"),
        ] {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
        assert!(matches!(
            printable("nothing to escape"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
