//! Links every guest binary with `link.ld` (guest RAM base 0x4000_0000) when building for the
//! bare-metal target; host builds (e.g. `cargo check --workspace`) are left alone.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if target == "aarch64-unknown-none" {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    }
}
