//! The `swarm` command ends with every node within its thresholds.

mod common;

use common::*;

fn summary(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"))
}

#[test]
fn short_swarm_of_four_nodes_reaches_its_thresholds() {
    let o = run(&[
        "swarm",
        "--nodes",
        "4",
        "--duration",
        "6",
        "--table-every",
        "3",
    ]);
    let out = stdout(&o);
    let s = summary(&out);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        s.starts_with("summary: every node within its connection thresholds"),
        "{s}"
    );
    assert!(s.contains("messages received"), "{s}");
    // The live table has one row per node.
    assert!(out.contains("node  peer id"), "{out}");
}

#[test]
fn swarm_with_no_arguments_ends_with_every_node_within_its_thresholds() {
    let o = run(&["swarm"]);
    let out = stdout(&o);
    let s = summary(&out);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        s.starts_with("summary: every node within its connection thresholds [2, 6]"),
        "{s}"
    );
}
