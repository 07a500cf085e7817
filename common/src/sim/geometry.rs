//! Small 2D helpers for room outlines.

/// A point in metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
}

impl Pt {
    pub const fn new(x: f64, y: f64) -> Pt {
        Pt { x, y }
    }

    pub fn dist(self, o: Pt) -> f64 {
        ((self.x - o.x).powi(2) + (self.y - o.y).powi(2)).sqrt()
    }

    pub fn lerp(self, o: Pt, f: f64) -> Pt {
        Pt::new(self.x + (o.x - self.x) * f, self.y + (o.y - self.y) * f)
    }
}

/// Even-odd rule; points exactly on an edge may go either way.
pub fn point_in_polygon(p: Pt, poly: &[Pt]) -> bool {
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x;
            if p.x < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Signed area (shoelace).
pub fn area(poly: &[Pt]) -> f64 {
    let n = poly.len();
    let mut s = 0.0;
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        s += a.x * b.y - b.x * a.y;
    }
    s / 2.0
}

/// Area centroid (falls back to the vertex mean for degenerate outlines).
pub fn centroid(poly: &[Pt]) -> Pt {
    let a = area(poly);
    let n = poly.len();
    if n == 0 {
        return Pt::new(0.0, 0.0);
    }
    if a.abs() < 1e-12 {
        let (sx, sy) = poly.iter().fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
        return Pt::new(sx / n as f64, sy / n as f64);
    }
    let (mut cx, mut cy) = (0.0, 0.0);
    for i in 0..n {
        let (p, q) = (poly[i], poly[(i + 1) % n]);
        let c = p.x * q.y - q.x * p.y;
        cx += (p.x + q.x) * c;
        cy += (p.y + q.y) * c;
    }
    Pt::new(cx / (6.0 * a), cy / (6.0 * a))
}

fn dist_to_segment(p: Pt, a: Pt, b: Pt) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return p.dist(a);
    }
    let t = (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0);
    p.dist(Pt::new(a.x + t * dx, a.y + t * dy))
}

/// Distance from `p` to the outline (0 when inside).
pub fn distance_to_polygon(p: Pt, poly: &[Pt]) -> f64 {
    if point_in_polygon(p, poly) {
        return 0.0;
    }
    distance_to_edges(p, poly)
}

/// Distance from `p` to the nearest edge of the outline.
pub fn distance_to_edges(p: Pt, poly: &[Pt]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| dist_to_segment(p, poly[i], poly[(i + 1) % n]))
        .fold(f64::INFINITY, f64::min)
}

/// Axis-aligned bounding box `(min, max)`.
pub fn bbox(poly: &[Pt]) -> (Pt, Pt) {
    let mut lo = Pt::new(f64::INFINITY, f64::INFINITY);
    let mut hi = Pt::new(f64::NEG_INFINITY, f64::NEG_INFINITY);
    for p in poly {
        lo.x = lo.x.min(p.x);
        lo.y = lo.y.min(p.y);
        hi.x = hi.x.max(p.x);
        hi.y = hi.y.max(p.y);
    }
    (lo, hi)
}

/// A point well inside the outline: the centroid if it is inside, else the grid point
/// farthest from the edges.
pub fn interior_point(poly: &[Pt]) -> Pt {
    let c = centroid(poly);
    if point_in_polygon(c, poly) {
        return c;
    }
    let (lo, hi) = bbox(poly);
    let mut best = (f64::NEG_INFINITY, c);
    const N: usize = 24;
    for i in 0..N {
        for j in 0..N {
            let p = Pt::new(
                lo.x + (hi.x - lo.x) * (i as f64 + 0.5) / N as f64,
                lo.y + (hi.y - lo.y) * (j as f64 + 0.5) / N as f64,
            );
            if point_in_polygon(p, poly) {
                let d = distance_to_edges(p, poly);
                if d > best.0 {
                    best = (d, p);
                }
            }
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Vec<Pt> {
        vec![
            Pt::new(0.0, 0.0),
            Pt::new(4.0, 0.0),
            Pt::new(4.0, 4.0),
            Pt::new(0.0, 4.0),
        ]
    }

    #[test]
    fn square_geometry() {
        let s = square();
        assert!(point_in_polygon(Pt::new(1.0, 1.0), &s));
        assert!(!point_in_polygon(Pt::new(5.0, 1.0), &s));
        assert_eq!(area(&s), 16.0);
        assert_eq!(centroid(&s), Pt::new(2.0, 2.0));
        assert_eq!(distance_to_polygon(Pt::new(6.0, 2.0), &s), 2.0);
        assert_eq!(distance_to_polygon(Pt::new(2.0, 2.0), &s), 0.0);
    }

    #[test]
    fn interior_point_of_a_u_shape_is_inside() {
        let u = vec![
            Pt::new(0.0, 0.0),
            Pt::new(10.0, 0.0),
            Pt::new(10.0, 10.0),
            Pt::new(8.0, 10.0),
            Pt::new(8.0, 2.0),
            Pt::new(2.0, 2.0),
            Pt::new(2.0, 10.0),
            Pt::new(0.0, 10.0),
        ];
        assert!(!point_in_polygon(centroid(&u), &u));
        assert!(point_in_polygon(interior_point(&u), &u));
    }
}
