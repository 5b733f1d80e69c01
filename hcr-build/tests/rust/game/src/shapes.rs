/// A circle, defined in a private module and re-exported at the root.
#[derive(Clone, Copy, Debug)]
pub struct Circle {
    pub r: f32,
}
