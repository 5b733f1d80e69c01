//! Loaded through a `#[path]` attribute.

/// Area of a circle.
#[unsafe(no_mangle)]
pub extern "C" fn circle_area(radius: f64) -> f64 {
    std::f64::consts::PI * radius * radius
}
