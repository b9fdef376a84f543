//! Links the hypervisor with `hyp.ld` (see that file for the memory layout).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/hyp.ld");
    println!("cargo:rerun-if-changed=hyp.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
