//! The identity device on every VM's bus (`hyp::platform::IDENTITY`): read-only registers saying
//! which VM this is and what it was cloned from (`hyp::identity` has the layout), so a clone's
//! guest — Linux userspace through `/dev/mem`, or a test guest — can tell itself apart. The values
//! are the VM's (`Vm::identity`), not the device's: a clone's copy reads its own VM's.

use alloc::boxed::Box;

use super::device::{Access, Ctx, Device, Reply};

/// The identity registers' device (stateless: it reads its VM's identity).
pub struct IdentityDevice;

impl Device for IdentityDevice {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn access(&self, cx: &Ctx<'_>, a: Access) -> Reply {
        if a.write.is_some() {
            return Reply::Unknown;
        }
        cx.vm.identity().read(cx.vm.number(), a.offset, a.size).map_or(Reply::Unknown, Reply::Value)
    }

    fn fork(&self) -> Box<dyn Device> {
        Box::new(IdentityDevice)
    }
}
