//! Test hooks: behaviour a QEMU scenario needs to reach a path no guest can reach on its own.
//! Each is switched on by a `selftest=NAME` token of the command line (`config`), only by it,
//! and is for the scenarios of `scenarios/` alone: a real deployment has none on. An unknown name
//! is refused like any bad token (exit status 2).
//!
//! - `panic-fault` — right after the scenario is read, EL2 panics, and the panic handler then
//!   faults at EL2 itself (a load from an unmapped address): the nested-fault guard of the EL2
//!   vectors (`arch/vectors.rs`) must end the run with the panic status 101 instead of
//!   re-entering the panic forever (`scenarios/panic-fault.toml`).
//! - `data-pages-nx` — a page a data fault maps loses stage-2 execute permission at once (the
//!   engine enters every page executable; KVM maps a page first touched by data without
//!   execute, for the same effect). A later instruction fetch from it takes a stage-2
//!   *permission* fault, whose IPA EL2 must find by re-walking the guest's stage 1
//!   (`virt/abort.rs`); the fetch fault then maps it executable (`scenarios/xonly.toml`).

use spin::Once;
use vm::map::Map;
use vm::pmap::Pmap;
use vm::{Access, Ipa, Prot};

/// One test hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SelfTest {
    PanicFault,
    DataPagesNx,
}

impl SelfTest {
    /// Every hook, with its name on the command line.
    const NAMES: [(&'static str, SelfTest); 2] =
        [("panic-fault", SelfTest::PanicFault), ("data-pages-nx", SelfTest::DataPagesNx)];

    /// The hook called `name`.
    pub fn named(name: &str) -> Option<SelfTest> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// The names, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::NAMES.iter().map(|(n, _)| *n)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of hooks (none by default).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SelfTests(u8);

impl SelfTests {
    pub fn with(self, t: SelfTest) -> SelfTests {
        SelfTests(self.0 | t.bit())
    }

    pub fn contains(self, t: SelfTest) -> bool {
        self.0 & t.bit() != 0
    }
}

/// The hooks of this run, set once at boot from the scenario.
static ON: Once<SelfTests> = Once::new();

/// Switch the scenario's hooks on (boot, once; later calls change nothing).
pub fn enable(set: SelfTests) {
    ON.call_once(|| set);
}

/// True when hook `t` is on (false before [`enable`]).
#[inline]
pub fn enabled(t: SelfTest) -> bool {
    ON.get().is_some_and(|s| s.contains(t))
}

/// The `data-pages-nx` hook, after the fault at `ipa` for `access` was resolved in `map`: a data
/// access takes stage-2 execute permission away from its page. (Inline: it is on every fault's
/// path, and costs one load when the hook is off.)
#[inline]
pub fn after_fault(map: &Map, ipa: Ipa, access: Access) {
    if access != Access::Exec && enabled(SelfTest::DataPagesNx) {
        let page = ipa.page_base();
        map.stage2().protect(page, page.add_pages(1), Prot::ALL - Prot::EXEC);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sets() {
        assert_eq!(SelfTest::named("panic-fault"), Some(SelfTest::PanicFault));
        assert_eq!(SelfTest::named("data-pages-nx"), Some(SelfTest::DataPagesNx));
        assert_eq!(SelfTest::named("panic"), None);
        let s = SelfTests::default().with(SelfTest::DataPagesNx);
        assert!(s.contains(SelfTest::DataPagesNx) && !s.contains(SelfTest::PanicFault));
        assert_eq!(SelfTest::names().count(), 2);
    }
}
