//! Arm semihosting (HLT #0xF000 at EL2): the hypervisor's only channel to the host — console,
//! files (guest images in, trace out), the scenario command line and the exit status.
//!
//! Each call traps into QEMU and costs milliseconds of wall time: callers batch (one console
//! line per call, trace records in large writes). Calls are safe to make from any CPU at any time;
//! serialising lines is the console's job (`crate::console`).
//!
//! Operation numbers and parameter blocks follow "Semihosting for AArch32 and AArch64" (Arm IHI
//! 0082): x0/w0 = operation, x1 = parameter (block address or value), result in x0.

use core::arch::asm;

const SYS_OPEN: u64 = 0x01;
const SYS_CLOSE: u64 = 0x02;
const SYS_WRITE0: u64 = 0x04;
const SYS_WRITE: u64 = 0x05;
const SYS_READ: u64 = 0x06;
const SYS_FLEN: u64 = 0x0C;
const SYS_GET_CMDLINE: u64 = 0x15;
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: with the AArch64 {reason, subcode} block, QEMU exits with status
/// `subcode`.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Longest host path accepted by [`open`] (the call needs a NUL-terminated copy).
pub const MAX_PATH: usize = 511;

/// Errors reported by semihosting calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The host refused the call (no such file, permission, I/O error).
    Host,
    /// The path is longer than [`MAX_PATH`] bytes or contains a NUL byte.
    BadPath,
    /// The host transferred fewer bytes than asked (`left` not transferred).
    Short { left: usize },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Host => write!(f, "host semihosting call failed"),
            Error::BadPath => write!(f, "path too long or contains NUL"),
            Error::Short { left } => write!(f, "short transfer ({left} bytes left)"),
        }
    }
}

/// An open host file handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(u64);

/// `fopen`-style modes (the semihosting mode numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// "rb": read, binary.
    ReadBinary = 1,
    /// "wb": write (truncate/create), binary.
    WriteBinary = 5,
}

/// Performs one semihosting call.
///
/// # Safety
/// `param` must be what operation `op` expects: for block operations, the address of a parameter
/// block whose pointers reference memory valid for the access the host will make (reads of
/// buffers to write, writes of buffers to read into) for the duration of the call.
unsafe fn call(op: u64, param: u64) -> u64 {
    let ret: u64;
    // SAFETY: HLT #0xF000 is the AArch64 semihosting trap; QEMU (semihosting enabled) performs
    // the operation and returns to the next instruction. Memory validity of `param` is the
    // caller's obligation (see above), hence no `nomem`.
    unsafe {
        asm!("hlt #0xf000", inout("x0") op => ret, in("x1") param, options(nostack));
    }
    ret
}

/// Writes a NUL-terminated byte string to the host console. `s` must end with a 0 byte; bytes
/// after the first 0 are not written.
pub fn write0(s: &[u8]) {
    assert!(s.contains(&0), "write0 needs a NUL-terminated buffer");
    // SAFETY: SYS_WRITE0 reads up to the first NUL, which lies inside `s` (checked above).
    unsafe { call(SYS_WRITE0, s.as_ptr() as u64) };
}

/// Opens a host file (relative paths are relative to QEMU's working directory).
pub fn open(path: &str, mode: Mode) -> Result<Handle, Error> {
    let bytes = path.as_bytes();
    if bytes.len() > MAX_PATH || bytes.contains(&0) {
        return Err(Error::BadPath);
    }
    let mut name = [0u8; MAX_PATH + 1];
    name[..bytes.len()].copy_from_slice(bytes);
    let block = [name.as_ptr() as u64, mode as u64, bytes.len() as u64];
    // SAFETY: the block holds a pointer to the NUL-terminated copy `name` and its length; both
    // live across the call; the host only reads them.
    let r = unsafe { call(SYS_OPEN, block.as_ptr() as u64) };
    if r as i64 == -1 { Err(Error::Host) } else { Ok(Handle(r)) }
}

/// Closes a handle from [`open`].
pub fn close(h: Handle) {
    let block = [h.0];
    // SAFETY: the block holds only the handle value.
    unsafe { call(SYS_CLOSE, block.as_ptr() as u64) };
}

/// Writes all of `buf` to the file.
pub fn write(h: Handle, buf: &[u8]) -> Result<(), Error> {
    // SAFETY: `buf` is borrowed for the call and is `buf.len()` bytes long.
    unsafe { write_raw(h, buf.as_ptr() as u64, buf.len()) }
}

/// Writes the bytes of `words` (in memory order: little endian) to `h`, all or an error.
pub fn write_words(h: Handle, words: &[u64]) -> Result<(), Error> {
    // SAFETY: `words` is borrowed for the call and is `size_of_val(words)` bytes long.
    unsafe { write_raw(h, words.as_ptr() as u64, core::mem::size_of_val(words)) }
}

/// SYS_WRITE of `len` bytes at `ptr`, all or an error.
///
/// # Safety
/// `[ptr, ptr + len)` must be readable memory that stays alive for the call.
unsafe fn write_raw(h: Handle, ptr: u64, len: usize) -> Result<(), Error> {
    let block = [h.0, ptr, len as u64];
    // SAFETY: the host reads `len` bytes from `ptr`, readable for the call (the caller's promise).
    let left = unsafe { call(SYS_WRITE, block.as_ptr() as u64) } as usize;
    match left {
        0 => Ok(()),
        l if l == len => Err(Error::Host),
        l => Err(Error::Short { left: l }),
    }
}

/// Reads up to `buf.len()` bytes; returns how many were read (0 at end of file).
pub fn read(h: Handle, buf: &mut [u8]) -> Result<usize, Error> {
    let block = [h.0, buf.as_mut_ptr() as u64, buf.len() as u64];
    // SAFETY: the host writes at most `buf.len()` bytes into `buf`, mutably borrowed for the call.
    let left = unsafe { call(SYS_READ, block.as_ptr() as u64) };
    if left as i64 == -1 || left as usize > buf.len() {
        return Err(Error::Host);
    }
    Ok(buf.len() - left as usize)
}

/// Length in bytes of an open file.
pub fn flen(h: Handle) -> Result<u64, Error> {
    let block = [h.0];
    // SAFETY: the block holds only the handle value.
    let r = unsafe { call(SYS_FLEN, block.as_ptr() as u64) };
    if r as i64 == -1 { Err(Error::Host) } else { Ok(r) }
}

/// Length in bytes of the host file at `path` (opened and closed again).
pub fn file_len(path: &str) -> Result<u64, Error> {
    let h = open(path, Mode::ReadBinary)?;
    let len = flen(h);
    close(h);
    len
}

/// Reads the whole host file at `path` into `out` (cleared first), with reads of up to 1 MiB.
pub fn read_file(path: &str, out: &mut alloc::vec::Vec<u8>) -> Result<(), Error> {
    let h = open(path, Mode::ReadBinary)?;
    let result = (|| {
        let len = usize::try_from(flen(h)?).map_err(|_| Error::Host)?;
        out.clear();
        out.resize(len, 0);
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(1 << 20);
            let n = read(h, &mut out[done..done + chunk])?;
            if n == 0 {
                return Err(Error::Short { left: len - done });
            }
            done += n;
        }
        Ok(())
    })();
    close(h);
    result
}

/// The command line (QEMU's `-append`), as bytes without the terminating NUL, copied into `buf`.
pub fn get_cmdline(buf: &mut [u8]) -> Result<&[u8], Error> {
    let mut block = [buf.as_mut_ptr() as u64, buf.len() as u64];
    // SAFETY: the host writes at most `buf.len()` bytes (NUL included) into `buf` and updates
    // block[1] with the length written; both are borrowed across the call.
    let r = unsafe { call(SYS_GET_CMDLINE, block.as_mut_ptr() as u64) };
    if r != 0 {
        return Err(Error::Host);
    }
    let n = (block[1] as usize).min(buf.len());
    let n = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    Ok(&buf[..n])
}

/// Ends the QEMU process with exit status `code` (mod 256). Never returns.
pub fn exit(code: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: the host reads the two-word block; the call does not return.
    unsafe { call(SYS_EXIT, block.as_ptr() as u64) };
    // If the host ignored the request, stop this CPU.
    loop {
        super::cpu::mask_interrupts();
        super::cpu::wfi();
    }
}
