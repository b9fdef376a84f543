//! Swap-disk fault injection through QEMU's `blkdebug` block driver (scenario `[swap]`
//! `fail_read_slots`, `fail_write_slots`, `fail_all`).
//!
//! The runner stacks the drive as `raw` (format) over `blkdebug` over the image file: the raw
//! driver fires blkdebug's `read_aio` / `write_aio` event on its child before each request, which
//! makes the rules of that event the active ones (QEMU 7.2 `block/blkdebug.c`: each event resets
//! the active set), and an active rule whose `sector` lies inside the request fails it with
//! `errno` (EIO). virtio-blk then answers the hypervisor's request with status IOERR
//! (`rerror=report,werror=report`: QEMU reports the error to the guest instead of pausing).
//! Rules are not `once`: a failing slot fails every time, as a bad disk block does.
//!
//! Slots are the hypervisor's (`hyp/src/virt/swapdisk.rs`): slot `s` (1-based) is the 4 KiB block
//! at sector `(s - 1) × 8`, and the last slot is the one its attach-time self-test writes and reads.

/// 512-byte sectors in one 4 KiB swap slot.
pub const SLOT_SECTORS: u64 = 8;

/// EIO: what a failing request ends with.
const EIO: u32 = 5;

/// Which swap I/O fails.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct SwapFaults {
    /// Reads touching these slots fail.
    pub read_slots: Vec<u32>,
    /// Writes touching these slots fail.
    pub write_slots: Vec<u32>,
    /// Every request fails (the self-test's too: the hypervisor must run without swap).
    pub all: bool,
}

impl SwapFaults {
    /// True when nothing is injected (the drive is attached without blkdebug).
    pub fn is_empty(&self) -> bool {
        !self.all && self.read_slots.is_empty() && self.write_slots.is_empty()
    }

    /// The blkdebug configuration file: one `[inject-error]` rule per failing slot and direction,
    /// or one per direction without a sector for `all`.
    pub fn config(&self) -> String {
        let mut out = String::from("# uvmhyp swap-disk faults (tools/src/blkdebug.rs)\n");
        let rules = [
            ("read_aio", "read", &self.read_slots),
            ("write_aio", "write", &self.write_slots),
        ];
        for (event, iotype, slots) in rules {
            if self.all {
                out.push_str(&rule(event, iotype, None));
            } else {
                for &s in slots {
                    out.push_str(&rule(
                        event,
                        iotype,
                        Some(u64::from(s.max(1) - 1) * SLOT_SECTORS),
                    ));
                }
            }
        }
        out
    }
}

/// One rule: fail `iotype` requests after `event`, those touching `sector` (every one without).
fn rule(event: &str, iotype: &str, sector: Option<u64>) -> String {
    let sector = sector.map_or(String::new(), |s| format!("sector = \"{s}\"\n"));
    format!("\n[inject-error]\nevent = \"{event}\"\niotype = \"{iotype}\"\nerrno = \"{EIO}\"\n{sector}once = \"off\"\n")
}

/// QEMU's `-drive` value for the swap disk `image`: raw over blkdebug (configured by the file
/// `config`) over the file, or the plain raw file without faults (`config` `None`).
pub fn drive(image: &str, config: Option<&str>) -> String {
    match config {
        None => format!("if=none,file={image},format=raw,id=swap"),
        Some(c) => format!(
            "if=none,id=swap,format=raw,rerror=report,werror=report,file.driver=blkdebug,file.config={c},file.image.driver=file,file.image.filename={image}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each failing slot is its first sector, read and write rules apart, every rule EIO and
    /// permanent.
    #[test]
    fn slots_become_sector_rules_of_their_direction() {
        let f = SwapFaults {
            read_slots: vec![1, 3],
            write_slots: vec![10],
            all: false,
        };
        let c = f.config();
        let rules: Vec<&str> = c.split("[inject-error]\n").skip(1).collect();
        assert_eq!(rules.len(), 3);
        assert!(
            rules[0].starts_with(
                "event = \"read_aio\"\niotype = \"read\"\nerrno = \"5\"\nsector = \"0\"\n"
            ),
            "{c}"
        );
        assert!(
            rules[1].contains("event = \"read_aio\"") && rules[1].contains("sector = \"16\"\n"),
            "{c}"
        );
        assert!(
            rules[2].contains("event = \"write_aio\"\niotype = \"write\"")
                && rules[2].contains("sector = \"72\"\n"),
            "{c}"
        );
        assert!(
            rules
                .iter()
                .all(|r| r.ends_with("once = \"off\"\n\n") || r.ends_with("once = \"off\"\n")),
            "{c}"
        );
    }

    /// `all` fails both directions everywhere: no sector, and the slot lists are moot.
    #[test]
    fn all_fails_every_request_of_both_directions() {
        let f = SwapFaults {
            read_slots: vec![2],
            write_slots: vec![],
            all: true,
        };
        let c = f.config();
        assert_eq!(c.matches("[inject-error]").count(), 2, "{c}");
        assert!(!c.contains("sector"), "{c}");
        assert!(
            c.contains("event = \"read_aio\"") && c.contains("event = \"write_aio\""),
            "{c}"
        );
        assert!(!f.is_empty() && SwapFaults::default().is_empty());
    }

    #[test]
    fn the_drive_stacks_raw_over_blkdebug_only_with_faults() {
        assert_eq!(
            drive("r/swap.img", None),
            "if=none,file=r/swap.img,format=raw,id=swap"
        );
        let d = drive("r/swap.img", Some("r/blkdebug.conf"));
        assert!(
            d.starts_with(
                "if=none,id=swap,format=raw,rerror=report,werror=report,file.driver=blkdebug,"
            ),
            "{d}"
        );
        assert!(
            d.ends_with(
                "file.config=r/blkdebug.conf,file.image.driver=file,file.image.filename=r/swap.img"
            ),
            "{d}"
        );
    }
}
