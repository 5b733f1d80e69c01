/// One body.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Body {
    pub pos: Vec2,
    pub vel: Vec2,
}

/// A 2D vector.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Vec2 {
    pub x: f32,
    pub y: f32,
}

impl Body {
    pub const ZERO: Body = Body { pos: Vec2 { x: 0.0, y: 0.0 }, vel: Vec2 { x: 0.0, y: 0.0 } };
}
