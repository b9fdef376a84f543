//! Host console input: which VM the host's keystrokes go to (focus), the escape key that moves
//! focus, and each VM's bounded queue of bytes its UART has no room for yet. Policy only,
//! host-tested; `virt::input` reads the host UART and hands bytes here.
//!
//! **Escape key: Ctrl-] (0x1d)**, then one of
//!
//! | key | effect |
//! |---|---|
//! | `n` | focus to the next live VM (by number, wrapping) |
//! | `1`..`9` | focus to `vm<N>`, if it is live |
//! | Ctrl-] | send one Ctrl-] to the focused VM |
//! | anything else | nothing is sent; the hypervisor prints how to use the key |
//!
//! Ctrl-] is telnet's escape: terminals send it as a byte, QEMU's `-chardev stdio` passes it
//! through (unlike Ctrl-A, the escape of QEMU's own multiplexer, not used here), and neither a
//! shell nor a test guest gives it a meaning.
//!
//! Focus starts at the first live VM; when the focused VM stops it moves to the next live one
//! ([`Focus::follow`], which `virt::input` calls as bytes arrive).

use alloc::collections::VecDeque;

/// The escape key: Ctrl-].
pub const ESCAPE: u8 = 0x1d;

/// What one host byte amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Give `byte` to VM `vm`.
    Deliver { vm: u16, byte: u8 },
    /// Focus moved to VM `vm` (print it).
    Focused(u16),
    /// An escape sequence that means nothing (print the help line); the bytes are not sent.
    Help,
    /// Nothing to do: the escape key itself, or input while no VM is live (dropped).
    Nothing,
}

/// Who has focus, and whether the escape key was the last byte.
#[derive(Clone, Debug, Default)]
pub struct Focus {
    vm: Option<u16>,
    escaped: bool,
}

impl Focus {
    /// The focused VM.
    pub fn vm(&self) -> Option<u16> {
        self.vm
    }

    /// Make sure focus is on a live VM: the first one at the start, the next one after a
    /// focused VM stopped. `live` lists the live VMs' numbers in increasing order. Returns the
    /// new focus when it moved.
    pub fn follow(&mut self, live: &[u16]) -> Option<u16> {
        if self.vm.is_some_and(|v| live.contains(&v)) {
            return None;
        }
        let next = match self.vm {
            None => live.first().copied(),
            Some(gone) => next_after(gone, live),
        };
        self.vm = next;
        next
    }

    /// One byte from the host, with `live` as for [`Focus::follow`].
    pub fn feed(&mut self, byte: u8, live: &[u16]) -> Action {
        self.follow(live);
        if core::mem::take(&mut self.escaped) {
            return match byte {
                ESCAPE => self.deliver(byte),
                b'n' => match self.vm.and_then(|v| next_after(v, live)) {
                    Some(v) => self.focus(v),
                    None => Action::Help,
                },
                b'1'..=b'9' => {
                    let want = u16::from(byte - b'0');
                    if live.contains(&want) {
                        self.focus(want)
                    } else {
                        Action::Help
                    }
                }
                _ => Action::Help,
            };
        }
        if byte == ESCAPE {
            self.escaped = true;
            return Action::Nothing;
        }
        self.deliver(byte)
    }

    fn deliver(&self, byte: u8) -> Action {
        match self.vm {
            Some(vm) => Action::Deliver { vm, byte },
            None => Action::Nothing,
        }
    }

    fn focus(&mut self, vm: u16) -> Action {
        self.vm = Some(vm);
        Action::Focused(vm)
    }
}

/// The first live VM after `vm`, wrapping around (`vm` itself if it is the only one).
fn next_after(vm: u16, live: &[u16]) -> Option<u16> {
    live.iter().copied().find(|&v| v > vm).or_else(|| live.first().copied())
}

/// One VM's host-side input queue: bytes for it that its UART's FIFO has no room for yet.
/// Bounded: a VM that does not read cannot make the hypervisor hold unbounded input; what does
/// not fit is dropped and counted (reported at the end of the run).
#[derive(Debug, Default)]
pub struct InputQueue {
    bytes: VecDeque<u8>,
    dropped: u64,
}

impl InputQueue {
    /// Bytes a queue holds at most (a screenful of typing, or a pasted file's first page).
    pub const CAPACITY: usize = 4096;

    /// Queue `byte`, or count it dropped when the queue is full.
    pub fn push(&mut self, byte: u8) {
        if self.bytes.len() < Self::CAPACITY {
            self.bytes.push_back(byte);
        } else {
            self.dropped += 1;
        }
    }

    /// The oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        self.bytes.pop_front()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Focus, bytes: &[u8], live: &[u16]) -> alloc::vec::Vec<Action> {
        bytes.iter().map(|&b| f.feed(b, live)).filter(|a| *a != Action::Nothing).collect()
    }

    #[test]
    fn focus_starts_at_the_first_vm_and_the_escape_moves_it() {
        let mut f = Focus::default();
        let live = [1, 2, 3];
        assert_eq!(feed(&mut f, b"a", &live), [Action::Deliver { vm: 1, byte: b'a' }]);
        assert_eq!(feed(&mut f, b"\x1dnb", &live), [Action::Focused(2), Action::Deliver { vm: 2, byte: b'b' }]);
        assert_eq!(feed(&mut f, b"\x1d3\x1dn", &live), [Action::Focused(3), Action::Focused(1)]);
        assert_eq!(feed(&mut f, b"\x1d2c", &live), [Action::Focused(2), Action::Deliver { vm: 2, byte: b'c' }]);
    }

    #[test]
    fn a_doubled_escape_sends_one_and_a_bad_one_sends_nothing() {
        let mut f = Focus::default();
        let live = [4, 7];
        assert_eq!(feed(&mut f, b"\x1d\x1d", &live), [Action::Deliver { vm: 4, byte: ESCAPE }]);
        assert_eq!(feed(&mut f, b"\x1dx", &live), [Action::Help]);
        // vm9 is not live; vm4 keeps focus.
        assert_eq!(feed(&mut f, b"\x1d9z", &live), [Action::Help, Action::Deliver { vm: 4, byte: b'z' }]);
        // An escape split across two polls still counts.
        assert_eq!(feed(&mut f, b"\x1d", &live), []);
        assert_eq!(feed(&mut f, b"n", &live), [Action::Focused(7)]);
    }

    #[test]
    fn a_stopped_vm_gives_focus_to_the_next_live_one() {
        let mut f = Focus::default();
        assert_eq!(f.follow(&[2, 3, 5]), Some(2));
        assert_eq!(f.follow(&[2, 3, 5]), None);
        assert_eq!(f.follow(&[3, 5]), Some(3));
        f.feed(ESCAPE, &[3, 5]);
        f.feed(b'5', &[3, 5]);
        // vm5 stopped: the next number after it, vm6.
        assert_eq!(f.follow(&[3, 6]), Some(6));
        assert_eq!(f.follow(&[]), None);
        assert_eq!(f.vm(), None);
        assert_eq!(f.feed(b'q', &[]), Action::Nothing);
        assert_eq!(f.feed(b'q', &[8]), Action::Deliver { vm: 8, byte: b'q' });
    }

    #[test]
    fn a_full_queue_counts_what_it_drops() {
        let mut q = InputQueue::default();
        for i in 0..InputQueue::CAPACITY + 10 {
            q.push(i as u8);
        }
        assert_eq!((q.len(), q.dropped()), (InputQueue::CAPACITY, 10));
        assert_eq!(q.pop(), Some(0));
        q.push(b'!');
        assert_eq!((q.len(), q.dropped()), (InputQueue::CAPACITY, 10));
    }
}
