//! Files the relay reads (the configuration, TLS PEM files), each read up to a cap whatever
//! the path names: a path such as `/dev/zero` must not be read without end.

use std::path::Path;

/// The largest configuration file read: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The whole of the file at `path` when it holds at most `cap` bytes; the reason, naming the
/// file, otherwise. Never reads more than `cap + 1` bytes, whatever the file is.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "{shown} is larger than {} KiB: not a configuration or PEM file",
            cap / 1024
        ));
    }
    Ok(bytes)
}
