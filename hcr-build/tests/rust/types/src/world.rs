use crate::Vec2;

/// One simulated body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Body {
    pub pos: Vec2,
    pub vel: Vec2,
    #[cfg(feature = "names")]
    pub name: String,
}

/// The whole simulation.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub tick: u64,
    pub bodies: Vec<Body>,
}
