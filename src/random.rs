//! Random bytes from the OS (`/dev/urandom`), for generated keys, cookies and CSRF tokens.
//! Falls back to uuid's v4 generator (also OS-seeded) if the device cannot be read.

use std::io::Read;

/// `n` random bytes as lowercase hex (2n characters).
pub fn hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if from_os.is_err() {
        for chunk in buf.chunks_mut(16) {
            let bytes = *uuid::Uuid::new_v4().as_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
