//! Guest calls: HVC #0 and (trapped by HCR_EL2.TSC) SMC #0 from a guest's EL1, SMC Calling
//! Convention (README, "Hypercall ABI"): function id in w0, arguments x1..x3, result in x0.
//! [`hyp::calls::decode`] says what the call is (dispatch by owner range, host-tested); the arch
//! calls are answered here, PSCI in `psci.rs`, the UVMHYP vendor calls in `uvmhyp.rs`.

use super::machine::Vcpu;
use super::next::Next;
use super::state::Hyp;
use super::callret::{answer, set_ret};
use super::{psci, uvmhyp};
use hyp::calls::{self, Call, NOT_SUPPORTED, SMCCC_1_1};
use hyp::esr::Syndrome;

/// A hypercall trap. For a trapped SMC the preferred return address is the SMC itself, so the
/// guest's PC is moved past it first; for HVC ELR_EL2 already points at the next instruction.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome, smc: bool) -> Next {
    if smc {
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(4);
    }
    // SMCCC uses immediate 0 only; any other is no call of ours.
    if syn.imm16() != 0 {
        set_ret(v, NOT_SUPPORTED);
        return Next::Resume;
    }
    let x = [v.regs.x[0], v.regs.x[1], v.regs.x[2], v.regs.x[3]];
    match calls::decode(x) {
        Call::SmcccVersion => answer(v, SMCCC_1_1),
        Call::ArchFeatures(fid) => answer(v, calls::arch_features(fid)),
        Call::Psci(c) => psci::handle(h, v, c),
        Call::Uvmhyp(c) => uvmhyp::handle(h, v, c),
        Call::Unknown(_) => answer(v, NOT_SUPPORTED),
    }
}
