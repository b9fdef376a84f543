//! The import graph of `hyp/src/virt/` has no cycle (issue 12: "layering without cycles"). Read
//! from the sources: every `super::name` a module of `virt/` mentions is an edge to `name.rs`;
//! a depth-first search finds any cycle and names it. (`mod.rs` only declares the modules and
//! calls `build` and `run`; nothing imports it.)

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

/// Module name → the `virt` modules it imports.
fn graph() -> BTreeMap<String, Vec<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/virt");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("hyp/src/virt exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".rs").map(str::to_string))
        .filter(|n| n != "mod")
        .collect();
    names.sort();
    let mut g = BTreeMap::new();
    for n in &names {
        let src = std::fs::read_to_string(std::format!("{dir}/{n}.rs")).expect("readable module");
        let code: String = src.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| l.to_string() + "\n").collect();
        let mut deps: Vec<String> = names
            .iter()
            .filter(|m| *m != n && mentions(&code, m))
            .cloned()
            .collect();
        deps.dedup();
        g.insert(n.clone(), deps);
    }
    g
}

/// `code` imports `module` through `super::` (`super::m::…`, `super::m;`, or `super::{…, m, …}`).
fn mentions(code: &str, module: &str) -> bool {
    let word = |s: &str| s.trim().trim_end_matches(['}', ';', ',']).split("::").next().unwrap_or("").trim() == module;
    code.split("super::").skip(1).any(|after| {
        if let Some(group) = after.strip_prefix('{') {
            group.split('}').next().unwrap_or("").split(',').any(word)
        } else {
            word(after.split([';', ' ', '\n', '(', ')', ',']).next().unwrap_or(""))
        }
    })
}

fn find_cycle(g: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, g: &BTreeMap<String, Vec<String>>, path: &mut Vec<String>, done: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.iter().any(|d| d == n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.push(n.to_string());
        None
    }
    let mut done = Vec::new();
    g.keys().find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn virt_modules_import_each_other_without_cycles() {
    let g = graph();
    assert!(g.len() >= 20, "read the modules of virt/: {:?}", g.keys());
    assert!(g["run"].contains(&"trap".to_string()) && g["trap"].contains(&"abort".to_string()), "edges are seen: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle in hyp/src/virt: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let g: BTreeMap<String, Vec<String>> = [("a", &["b"][..]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]
        .into_iter()
        .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(find_cycle(&g), Some(["a", "b", "c", "a"].map(String::from).to_vec()));
    assert!(mentions("use super::{abort, irq};", "irq") && mentions("super::run::wake(h)", "run") && !mentions("use super::running;", "run"));
}
