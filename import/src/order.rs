//! The order of the log: every command after the producers of its inputs,
//! otherwise in database order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::converted::Converted;
use crate::Remark;

/// `commands` reordered so producers come first (stable otherwise);
/// commands in a dependency cycle are left out and reported.
pub(crate) fn producers_first(
    commands: Vec<Converted>,
    left_out: &mut Vec<Remark>,
) -> Vec<Converted> {
    let producer: HashMap<&str, usize> = commands
        .iter()
        .enumerate()
        .flat_map(|(at, c)| {
            crate::fileops::made(c)
                .iter()
                .map(move |o| (o.as_str(), at))
        })
        .collect();
    let mut waiting = vec![0usize; commands.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); commands.len()];
    for (at, c) in commands.iter().enumerate() {
        let mut deps: Vec<usize> = c
            .inputs
            .iter()
            .filter_map(|i| producer.get(i.as_str()).copied())
            .filter(|&p| p != at)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        waiting[at] = deps.len();
        for p in deps {
            consumers[p].push(at);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..commands.len())
        .filter(|&at| waiting[at] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(commands.len());
    while let Some(Reverse(at)) = ready.pop() {
        order.push(at);
        for &next in &consumers[at] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    let mut slots: Vec<Option<Converted>> = commands.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(order.len());
    for at in order {
        if let Some(c) = slots[at].take() {
            out.push(c);
        }
    }
    for c in slots.into_iter().flatten() {
        left_out.push(Remark {
            entry: c.entry,
            subject: c.shown(),
            reason: "it is in a cycle: it needs, through other commands, an output of its own"
                .into(),
        });
    }
    out
}
