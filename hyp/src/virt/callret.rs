//! Returning from a guest call: the SMCCC result goes in x0 (shared by `smccc`, `psci` and
//! `uvmhyp`).

use super::machine::Vcpu;
use super::next::Next;

/// Write an SMCCC result to x0.
pub fn set_ret(v: &mut Vcpu, r: i64) {
    v.regs.x[0] = r as u64;
}

/// Return `r` in x0 and resume.
pub fn answer(v: &mut Vcpu, r: i64) -> Next {
    set_ret(v, r);
    Next::Resume
}
