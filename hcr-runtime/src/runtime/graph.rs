//! The module graph: modules and the modules they import. One topological
//! order, one cycle finder, one reachability from the roots.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A module graph: each node a module name, its imports, and whether the
/// host loaded it (a root).
pub(super) struct Graph<'a> {
    nodes: Vec<Node<'a>>,
    index: HashMap<&'a str, usize>,
}

struct Node<'a> {
    name: &'a str,
    imports: &'a [Arc<str>],
    root: bool,
}

impl<'a> Graph<'a> {
    /// The graph of `nodes`, in order; a node whose name came before
    /// replaces the earlier one in its place (a new build replacing the
    /// loaded one).
    pub(super) fn new(nodes: impl IntoIterator<Item = (&'a str, &'a [Arc<str>], bool)>) -> Graph<'a> {
        let mut graph = Graph { nodes: Vec::new(), index: HashMap::new() };
        for (name, imports, root) in nodes {
            let node = Node { name, imports, root };
            match graph.index.get(name) {
                Some(&i) => graph.nodes[i] = node,
                None => {
                    graph.index.insert(name, graph.nodes.len());
                    graph.nodes.push(node);
                }
            }
        }
        graph
    }

    /// Node positions, every module after the modules it imports (as far as
    /// a cycle allows). Imports that are not nodes are skipped.
    pub(super) fn order(&self) -> Vec<usize> {
        let mut visited = vec![false; self.nodes.len()];
        let mut order = Vec::with_capacity(self.nodes.len());
        for i in 0..self.nodes.len() {
            self.visit(i, &mut visited, &mut order);
        }
        order
    }

    fn visit(&self, i: usize, visited: &mut [bool], order: &mut Vec<usize>) {
        if std::mem::replace(&mut visited[i], true) {
            return;
        }
        for import in self.nodes[i].imports {
            if let Some(&j) = self.index.get(&**import) {
                self.visit(j, visited, order);
            }
        }
        order.push(i);
    }

    /// The names in [`Graph::order`].
    pub(super) fn ordered_names(&self) -> Vec<&'a str> {
        self.order().into_iter().map(|i| self.nodes[i].name).collect()
    }

    /// A cycle of imports, if there is one: the modules on it, the first
    /// repeated at the end. The search starts from `first` (in that order),
    /// then from every node by name, so the cycle is reported from where it
    /// was entered.
    pub(super) fn cycle<'s>(&self, first: impl IntoIterator<Item = &'s str>) -> Option<Vec<String>>
    where
        'a: 's,
    {
        let mut names: Vec<&str> = self.nodes.iter().map(|n| n.name).collect();
        names.sort_unstable();
        let mut done = HashSet::new();
        let mut path = Vec::new();
        for start in first.into_iter().chain(names) {
            if let Some(cycle) = self.find_cycle(start, &mut path, &mut done) {
                return Some(cycle);
            }
        }
        None
    }

    /// Depth-first search for a cycle from `node`.
    fn find_cycle<'s>(&self, node: &'s str, path: &mut Vec<&'s str>, done: &mut HashSet<&'s str>) -> Option<Vec<String>>
    where
        'a: 's,
    {
        if done.contains(node) {
            return None;
        }
        if let Some(at) = path.iter().position(|&n| n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        path.push(node);
        let imports = self.index.get(node).map_or(&[][..], |&i| self.nodes[i].imports);
        for import in imports {
            if let Some(cycle) = self.find_cycle(import, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }

    /// The modules a root reaches through imports (the roots included).
    pub(super) fn reachable(&self) -> HashSet<&'a str> {
        let mut reachable = HashSet::new();
        let mut work: Vec<&str> = self.nodes.iter().filter(|n| n.root).map(|n| n.name).collect();
        while let Some(name) = work.pop() {
            if reachable.insert(name)
                && let Some(&i) = self.index.get(name)
            {
                work.extend(self.nodes[i].imports.iter().map(|i| &**i));
            }
        }
        reachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|&s| Arc::from(s)).collect()
    }

    #[test]
    fn cycles_are_found_from_where_they_are_entered() {
        let (a, b, c) = (names(&["b"]), names(&["c"]), names(&["a"]));
        let graph = Graph::new([("a", &a[..], true), ("b", &b[..], false), ("c", &c[..], false)]);
        assert_eq!(graph.cycle([]).unwrap(), ["a", "b", "c", "a"]);
        assert_eq!(graph.cycle(["c"]).unwrap(), ["c", "a", "b", "c"]);
        let (a, b) = (names(&["b"]), names(&[]));
        assert_eq!(Graph::new([("a", &a[..], true), ("b", &b[..], false)]).cycle([]), None);
    }

    #[test]
    fn imports_come_first_and_replacements_keep_their_place() {
        let (top, mid, low, none) = (names(&["mid"]), names(&["low"]), names(&[]), names(&[]));
        let graph = Graph::new([
            ("top", &top[..], true),
            ("mid", &none[..], false),
            ("low", &low[..], false),
            ("mid", &mid[..], false),
        ]);
        assert_eq!(graph.ordered_names(), ["low", "mid", "top"]);
        assert_eq!(graph.order(), [2, 1, 0], "positions of first appearance");
    }

    #[test]
    fn reachability_starts_at_the_roots() {
        let (top, mid, low, lone) = (names(&["mid"]), names(&["low", "gone"]), names(&[]), names(&["low"]));
        let graph = Graph::new([
            ("top", &top[..], true),
            ("mid", &mid[..], false),
            ("low", &low[..], false),
            ("lone", &lone[..], false),
        ]);
        let mut reached: Vec<&str> = graph.reachable().into_iter().collect();
        reached.sort_unstable();
        assert_eq!(reached, ["gone", "low", "mid", "top"]);
    }
}
