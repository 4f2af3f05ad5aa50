//! Lower-case hex text of digests and ids, as every id, seal and signature the relay writes.
//!
//! `hex::encode` builds its string one `char` at a time through an iterator; a push writes
//! five such strings (event id twice, seal, trace id, signature), which showed in its profile.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex, two digits a byte.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_what_hex_encode_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::lower(&bytes), hex::encode(&bytes));
        assert_eq!(super::lower(&[]), "");
    }
}
