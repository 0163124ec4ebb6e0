//! Where sealed seconds go: one anonymous temporary file per process (unlinked
//! at once, gone with the process), appended to once per second per thread
//! and read back when a checkpoint or the end of the run builds its results.
//! A soak of hours would otherwise keep a KB per second and thread in
//! memory: 30 minutes added 2 MB (18%) to a 12 MB run. The file's pages are
//! the kernel's cache, not the process's memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};

/// The spill file and its length; `None` if none could be created (then
/// sealed seconds stay in memory).
static FILE: OnceLock<Option<Mutex<(File, u64)>>> = OnceLock::new();

fn file() -> Option<&'static Mutex<(File, u64)>> {
    FILE.get_or_init(|| tempfile::tempfile().ok().map(|f| Mutex::new((f, 0)))).as_ref()
}

/// Where one sealed second's bytes are in the spill file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spilled {
    offset: u64,
    len: u32,
}

impl Spilled {
    /// Appends `bytes`; `None` when there is no spill file or the write failed
    /// (a full disk): the caller keeps them in memory instead.
    pub fn write(bytes: &[u8]) -> Option<Spilled> {
        let len = u32::try_from(bytes.len()).ok()?;
        let mut file = file()?.lock().ok()?;
        let offset = file.1;
        file.0.write_all_at(bytes, offset).ok()?;
        file.1 += u64::from(len);
        Some(Spilled { offset, len })
    }

    /// The bytes written, read back.
    pub fn read(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.len as usize];
        let file = file().expect("a spilled second has a spill file");
        let file = file.lock().unwrap_or_else(|p| p.into_inner());
        file.0.read_exact_at(&mut bytes, self.offset).expect("reading back what this process wrote");
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_bytes_read_back_as_written() {
        let a = Spilled::write(b"first second").unwrap();
        let b = Spilled::write(&[7u8; 3000]).unwrap();
        assert_eq!(a.read(), b"first second");
        assert_eq!(b.read(), vec![7u8; 3000]);
        assert_ne!(a.offset, b.offset);
    }
}
