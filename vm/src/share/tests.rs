//! Unit tests of the fair-memory policy: entitlements, who is over, and the pagedaemon's clock
//! taking from the VMs over their share on a real engine.

use super::*;
use crate::fault::FaultError;
use crate::swap::MemSwap;
use crate::testenv::*;

fn claim(min: usize, max: Option<usize>, shares: u32, ram: usize) -> Claim {
    Claim {
        share: MemShare { min, max, shares },
        ram,
    }
}

#[test]
fn the_pool_beyond_the_minimums_goes_by_shares() {
    // 1000 frames: a's 100 guaranteed, the other 900 split 1:2.
    let e = entitlements(
        &[claim(100, None, 1000, 2000), claim(0, None, 2000, 2000)],
        1000,
    );
    assert_eq!(e, [100 + 300, 600]);
}

#[test]
fn what_a_capped_vm_cannot_take_goes_to_the_others() {
    // Equal shares, but a cannot hold more than 100 frames (its RAM) and b not more than 300
    // (its limit): c gets the rest.
    let e = entitlements(
        &[
            claim(0, None, 10, 100),
            claim(0, Some(300), 10, 4000),
            claim(0, None, 10, 4000),
        ],
        1000,
    );
    assert_eq!(e, [100, 300, 600]);
}

#[test]
fn minimums_beyond_the_pool_are_still_entitlements() {
    let e = entitlements(
        &[claim(600, None, 1, 1000), claim(600, None, 1, 1000)],
        1000,
    );
    assert_eq!(e, [600, 600]);
    // And a minimum above the RAM is the RAM.
    assert_eq!(entitlements(&[claim(600, None, 1, 100)], 1000), [100]);
}

#[test]
fn no_shares_no_split() {
    assert_eq!(entitlements(&[claim(10, None, 0, 100)], 1000), [10]);
    assert!(entitlements(&[], 1000).is_empty());
}

fn standing(vmid: u16, resident: usize, entitlement: usize, max: Option<usize>) -> Standing {
    Standing {
        vmid: Vmid(vmid),
        claim: claim(0, max, 1, 10_000),
        resident,
        entitlement,
    }
}

#[test]
fn the_most_over_is_found_and_never_the_asker() {
    let s = [
        standing(1, 900, 400, None),
        standing(2, 50, 600, None),
        standing(3, 500, 400, None),
    ];
    assert_eq!(most_over(&s, Vmid(2)), Some(Vmid(1)));
    assert_eq!(most_over(&s, Vmid(1)), Some(Vmid(3)));
    // Nobody over: nobody to blame.
    assert_eq!(
        most_over(
            &[standing(1, 10, 400, None), standing(2, 10, 600, None)],
            Vmid(2)
        ),
        None
    );
    // Policy off (no members): nobody either — the VM that finds the pool empty is stopped.
    assert_eq!(most_over(&[], Vmid(2)), None);
    // Equal excess: the lower VMID.
    assert_eq!(
        most_over(
            &[standing(4, 20, 10, None), standing(3, 20, 10, None)],
            Vmid(1)
        ),
        Some(Vmid(3))
    );
}

#[test]
fn over_max_is_strict() {
    assert!(!standing(1, 100, 50, Some(100)).over_max());
    assert!(standing(1, 101, 50, Some(100)).over_max());
    assert!(!standing(1, 10_000, 50, None).over_max());
}

#[test]
fn vm_sets_hold_every_vmid() {
    let mut s = VmSet::default();
    assert!(s.is_empty());
    for v in [0, 63, 64, 255] {
        s.insert(Vmid(v));
    }
    assert!([0, 63, 64, 255].iter().all(|&v| s.contains(Vmid(v))));
    assert!(!s.contains(Vmid(1)) && !s.contains(Vmid(128)));
    // Beyond the 8-bit VMID: ignored, never a panic.
    s.insert(Vmid(4096));
    assert!(!s.contains(Vmid(4096)));
}

/// A hog (vmid 1) that wrote `hog` pages and an innocent (vmid 2) that wrote `innocent`, on a
/// pool of `frames` with swap.
fn hog_and_innocent(frames: usize, hog: u64, innocent: u64) -> (Env, Arc<Map>, Arc<Map>) {
    let e = env(frames);
    e.uvm.set_swap(MemSwap::new(256));
    let h = e.map(1);
    h.insert(anon_spec(0, 256)).unwrap();
    let i = e.map(2);
    i.insert(anon_spec(0, 256)).unwrap();
    for p in 0..hog {
        wr(&h, page(p)).unwrap();
    }
    for p in 0..innocent {
        wr(&i, page(p)).unwrap();
    }
    (e, h, i)
}

#[test]
fn residents_are_the_stage2_mappings_of_each_vm() {
    let (e, h, i) = hog_and_innocent(200, 60, 10);
    e.uvm.shares().join(&h, MemShare::normal(256), 256);
    e.uvm.shares().join(
        &i,
        MemShare {
            min: 50,
            max: None,
            shares: 10,
        },
        256,
    );
    let s = e.uvm.shares().standings(e.uvm.total_pages());
    assert_eq!(
        s.iter().map(|s| (s.vmid, s.resident)).collect::<Vec<_>>(),
        [(Vmid(1), 60), (Vmid(2), 10)]
    );
    assert_eq!(e.uvm.shares().claim(Vmid(2)).map(|c| c.share.min), Some(50));
    assert_eq!(e.uvm.shares().limit(Vmid(2)), None, "no member has a limit");
    let k = e.map(3);
    e.uvm.shares().join(
        &k,
        MemShare {
            min: 0,
            max: Some(30),
            shares: 10,
        },
        256,
    );
    assert_eq!(
        (e.uvm.shares().limit(Vmid(3)), e.uvm.shares().limit(Vmid(2))),
        (Some(30), None)
    );
    e.uvm.shares().leave(Vmid(1));
    assert_eq!(e.uvm.shares().standings(200).len(), 2);
    assert_eq!(e.uvm.shares().claim(Vmid(1)), None);
}

#[test]
fn reclaim_takes_from_the_vm_over_its_share_first() {
    // Without claims the clock takes the oldest pages: the hog's, then the innocent's. With
    // claims the innocent's pages are spared even when they are the oldest.
    let (e, h, i) = hog_and_innocent(120, 0, 20);
    for p in 0..80 {
        wr(&h, page(p)).unwrap();
    }
    e.uvm.shares().join(
        &h,
        MemShare {
            min: 0,
            max: None,
            shares: 10,
        },
        256,
    );
    e.uvm.shares().join(
        &i,
        MemShare {
            min: 40,
            max: None,
            shares: 10,
        },
        256,
    );
    let before = e.uvm.shares().standings(e.uvm.total_pages());
    assert!(
        before[0].excess() > 0 && before[1].excess() == 0,
        "{before:?}"
    );
    let freed = e.uvm.reclaim(30);
    assert!(freed >= 30, "freed {freed}");
    let after = e.uvm.shares().standings(e.uvm.total_pages());
    assert_eq!(after[1].resident, 20, "the innocent kept every page");
    assert_eq!(after[0].resident, 80 - freed);
    // Every page reads back.
    for p in 0..20 {
        assert!(rd(&i, page(p)).is_ok());
    }
}

#[test]
fn without_claims_the_oldest_pages_go_whoever_holds_them() {
    // The same pool as above, the policy off: the innocent's older pages are taken.
    let (e, h, i) = hog_and_innocent(120, 0, 20);
    for p in 0..80 {
        wr(&h, page(p)).unwrap();
    }
    let freed = e.uvm.reclaim(30);
    assert!(freed >= 30);
    assert!(
        i.stage2().resident() < 20,
        "the clock took from the innocent too"
    );
}

#[test]
fn only_from_takes_the_pages_of_one_vm() {
    let (e, h, i) = hog_and_innocent(120, 40, 40);
    let freed = e.uvm.reclaim_sparing(10, Spare::only_from(Vmid(2)));
    assert!(freed >= 10);
    assert_eq!(
        (h.stage2().resident(), i.stage2().resident()),
        (40, 40 - freed)
    );
}

#[test]
fn without_swap_the_innocent_finds_the_pool_empty_and_the_hog_is_the_one_over() {
    // No swap: nothing the hog wrote can be freed. The innocent's fault fails (today's
    // behaviour, which would stop it); the policy names the hog as the VM to stop instead.
    let e = env(64);
    let h = e.map(1);
    h.insert(anon_spec(0, 256)).unwrap();
    let i = e.map(2);
    i.insert(anon_spec(0, 256)).unwrap();
    let mut hog = 0;
    while wr(&h, page(hog)).is_ok() {
        hog += 1;
    }
    assert_eq!(wr(&i, page(0)), Err(FaultError::NoMemory));
    // Policy off: nobody else to blame.
    assert_eq!(most_over(&e.uvm.shares().standings(64), Vmid(2)), None);
    e.uvm.shares().join(&h, MemShare::normal(256), 256);
    e.uvm.shares().join(
        &i,
        MemShare {
            min: 16,
            max: None,
            shares: 10,
        },
        256,
    );
    let s = e.uvm.shares().standings(64);
    assert_eq!(most_over(&s, Vmid(2)), Some(Vmid(1)));
    assert!(s[1].resident < s[1].entitlement);
    // Stopping the hog (its RAM removed, as the hypervisor does) lets the innocent fault.
    h.remove(page(0), page(256)).unwrap();
    assert!(wr(&i, page(0)).is_ok());
}
