/// Lines of a report, in a public module.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub lines: Vec<String>,
}
