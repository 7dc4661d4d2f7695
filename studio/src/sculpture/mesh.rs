//! The closed triangle mesh of the plaque, in millimetres, Z up, lying on z = 0.
//!
//! - Top: the height field as a grid, two triangles per cell (split along the diagonal
//!   whose ends differ less in height, which follows ridges and valleys).
//! - Walls: one quad (two triangles) from each boundary edge of the top straight down
//!   to z = 0, on the four sides of the rectangle.
//! - Bottom: a fan from the bottom's centre to every bottom edge of the walls (the
//!   boundary points are collinear along each side, so a fan from the centre is the
//!   triangulation without slivers of zero area).
//!
//! Every point is stored once, so the mesh is closed exactly when every edge is shared
//! by two triangles; triangles wind counter-clockwise seen from outside. `check` proves
//! both. Each triangle records its region (top, one of the four walls, bottom), so a
//! renderer can give the sharp edges between regions one normal per side.

use super::relief::Plate;

/// The part of the plaque a triangle belongs to; normals are smooth within a region
/// and break between regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Region {
    Top = 0,
    /// The wall along the photo's bottom edge (y = 0), facing -Y.
    Front = 1,
    /// The wall at x = width, facing +X.
    Right = 2,
    /// The wall along the photo's top edge (y = depth), facing +Y.
    Back = 3,
    /// The wall at x = 0, facing -X.
    Left = 4,
    Bottom = 5,
}

impl Region {
    pub const COUNT: usize = 6;
}

pub(super) struct Mesh {
    /// Points in millimetres, each stored once.
    pub positions: Vec<[f32; 3]>,
    /// Counter-clockwise seen from outside.
    pub triangles: Vec<[u32; 3]>,
    /// The region of each triangle.
    pub regions: Vec<Region>,
}

impl Mesh {
    /// The smallest and largest coordinates.
    pub fn bounds(&self) -> ([f32; 3], [f32; 3]) {
        let mut min = [f32::INFINITY; 3];
        let mut max = [f32::NEG_INFINITY; 3];
        for p in &self.positions {
            for c in 0..3 {
                min[c] = min[c].min(p[c]);
                max[c] = max[c].max(p[c]);
            }
        }
        (min, max)
    }

    /// The cross product of a triangle's edges: along its outward normal, as long as
    /// twice its area.
    pub fn area_normal(&self, triangle: usize) -> [f64; 3] {
        let [a, b, c] = self.triangles[triangle].map(|v| self.positions[v as usize].map(f64::from));
        cross(sub(b, a), sub(c, a))
    }
}

/// The plaque for a height field of `plate.columns` × `plate.rows` heights (row 0 at
/// the far edge, see `Plate`), every height above 0.
pub(super) fn build(plate: &Plate, heights: &[f32]) -> Mesh {
    let (cols, rows) = (plate.columns, plate.rows);
    debug_assert_eq!(heights.len(), cols * rows);
    let top = |i: usize, j: usize| (j * cols + i) as u32;
    let mut positions = Vec::with_capacity(cols * rows + 2 * (cols + rows));
    for j in 0..rows {
        for i in 0..cols {
            positions.push([plate.x(i), plate.y(j), heights[j * cols + i]]);
        }
    }
    let cells = (cols - 1) * (rows - 1);
    let rim = 2 * (cols - 1) + 2 * (rows - 1);
    let mut triangles = Vec::with_capacity(2 * cells + 3 * rim);
    let mut regions = Vec::with_capacity(2 * cells + 3 * rim);

    for j in 0..rows - 1 {
        for i in 0..cols - 1 {
            // a b   (row j, the farther one)
            // c d   (row j + 1)
            let (a, b, c, d) = (top(i, j), top(i + 1, j), top(i, j + 1), top(i + 1, j + 1));
            let h = |v: u32| heights[v as usize];
            if (h(a) - h(d)).abs() <= (h(b) - h(c)).abs() {
                triangles.extend([[a, c, d], [a, d, b]]);
            } else {
                triangles.extend([[c, d, b], [c, b, a]]);
            }
            regions.extend([Region::Top; 2]);
        }
    }

    // The top's boundary, counter-clockwise seen from above, each point with the wall
    // of the edge that starts at it.
    let mut boundary = Vec::with_capacity(rim);
    boundary.extend((0..cols - 1).map(|i| (top(i, rows - 1), Region::Front)));
    boundary.extend((1..rows).rev().map(|j| (top(cols - 1, j), Region::Right)));
    boundary.extend((1..cols).rev().map(|i| (top(i, 0), Region::Back)));
    boundary.extend((0..rows - 1).map(|j| (top(0, j), Region::Left)));
    let first_bottom = positions.len() as u32;
    for &(v, _) in &boundary {
        let [x, y, _] = positions[v as usize];
        positions.push([x, y, 0.0]);
    }
    let centre = positions.len() as u32;
    positions.push([plate.width_mm / 2.0, plate.depth_mm / 2.0, 0.0]);

    for k in 0..boundary.len() {
        let next = (k + 1) % boundary.len();
        let ((tp, side), (tq, _)) = (boundary[k], boundary[next]);
        let (bp, bq) = (first_bottom + k as u32, first_bottom + next as u32);
        triangles.extend([[bp, bq, tq], [bp, tq, tp], [centre, bq, bp]]);
        regions.extend([side, side, Region::Bottom]);
    }
    Mesh { positions, triangles, regions }
}

/// Why a mesh is not a closed, consistently oriented, outward-facing 2-manifold.
#[derive(Debug, PartialEq)]
pub(super) enum MeshDefect {
    IndexOutOfRange {
        triangle: usize,
    },
    /// Two corners share a point, or the triangle has no area.
    Degenerate {
        triangle: usize,
    },
    UnusedPoint {
        point: u32,
    },
    /// An edge used twice in the same direction (inconsistent winding, or more than two
    /// triangles on an edge).
    RepeatedEdge {
        from: u32,
        to: u32,
    },
    /// An edge without a neighbour across it: the mesh has a hole.
    OpenEdge {
        from: u32,
        to: u32,
    },
    /// The triangles around a point form more than one fan (a pinch).
    PinchedPoint {
        point: u32,
    },
    /// The enclosed volume is not positive: the triangles face inward.
    InsideOut,
}

/// Proves that `mesh` is closed (every edge shared by exactly two triangles), oriented
/// consistently (the two run the edge in opposite directions), 2-manifold (the
/// triangles around each point form one fan), free of degenerate triangles, and faces
/// outward (positive enclosed volume).
pub(super) fn check(mesh: &Mesh) -> Result<(), MeshDefect> {
    let n = mesh.positions.len() as u32;
    let mut used = vec![false; n as usize];
    let mut edges = Vec::with_capacity(mesh.triangles.len() * 3);
    // (point, the next corner, the previous corner) of every corner.
    let mut corners = Vec::with_capacity(mesh.triangles.len() * 3);
    let mut volume6 = 0.0;
    for (t, tri) in mesh.triangles.iter().enumerate() {
        if tri.iter().any(|&v| v >= n) {
            return Err(MeshDefect::IndexOutOfRange { triangle: t });
        }
        let [a, b, c] = *tri;
        let area2 = norm(mesh.area_normal(t));
        if a == b || b == c || a == c || area2 <= 1e-9 {
            return Err(MeshDefect::Degenerate { triangle: t });
        }
        for k in 0..3 {
            used[tri[k] as usize] = true;
            edges.push((tri[k], tri[(k + 1) % 3]));
            corners.push((tri[k], tri[(k + 1) % 3], tri[(k + 2) % 3]));
        }
        let [pa, pb, pc] = tri.map(|v| mesh.positions[v as usize].map(f64::from));
        volume6 += dot(pa, cross(pb, pc));
    }
    edges.sort_unstable();
    if let Some(w) = edges.windows(2).find(|w| w[0] == w[1]) {
        return Err(MeshDefect::RepeatedEdge { from: w[0].0, to: w[0].1 });
    }
    if let Some(&(from, to)) = edges.iter().find(|&&(a, b)| edges.binary_search(&(b, a)).is_err()) {
        return Err(MeshDefect::OpenEdge { from, to });
    }
    // Around each point, step from a corner to the one across its incoming edge; one
    // fan means every corner of the point is reached before returning to the start.
    corners.sort_unstable();
    let mut start = 0;
    while start < corners.len() {
        let point = corners[start].0;
        let end = start + corners[start..].iter().take_while(|c| c.0 == point).count();
        let fan = &corners[start..end];
        let mut at = 0;
        for step in 1..=fan.len() {
            let previous = fan[at].2;
            at = fan.binary_search_by(|c| c.1.cmp(&previous)).map_err(|_| MeshDefect::PinchedPoint { point })?;
            if at == 0 && step < fan.len() {
                return Err(MeshDefect::PinchedPoint { point });
            }
        }
        if at != 0 {
            return Err(MeshDefect::PinchedPoint { point });
        }
        start = end;
    }
    if let Some(point) = used.iter().position(|u| !u) {
        return Err(MeshDefect::UnusedPoint { point: point as u32 });
    }
    if volume6 <= 0.0 {
        return Err(MeshDefect::InsideOut);
    }
    Ok(())
}

pub(super) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(super) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub(super) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(super) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// `a` scaled to unit length (the zero vector stays zero).
pub(super) fn unit(a: [f64; 3]) -> [f64; 3] {
    let n = norm(a);
    if n > 0.0 { a.map(|c| c / n) } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Mesh {
        let plate = Plate { columns: 4, rows: 3, width_mm: 30.0, depth_mm: 20.0 };
        let heights: Vec<f32> = (0..12).map(|i| 3.0 + (i % 5) as f32).collect();
        build(&plate, &heights)
    }

    #[test]
    fn sculpture_mesh_of_a_small_grid_is_closed_and_counted() {
        let mesh = small();
        assert_eq!(check(&mesh), Ok(()));
        // 2 per cell on top, 2 per boundary edge on the walls, 1 per boundary edge below.
        assert_eq!(mesh.triangles.len(), 2 * 3 * 2 + 3 * (2 * 3 + 2 * 2));
        assert_eq!(mesh.positions.len(), 12 + 10 + 1);
    }

    #[test]
    fn sculpture_mesh_check_finds_holes_flips_and_pinches() {
        let mut holed = small();
        holed.triangles.pop();
        holed.regions.pop();
        assert!(matches!(check(&holed), Err(MeshDefect::OpenEdge { .. })));
        let mut flipped = small();
        flipped.triangles[0].swap(1, 2);
        assert!(matches!(check(&flipped), Err(MeshDefect::RepeatedEdge { .. })));
        let mut inside_out = small();
        inside_out.triangles.iter_mut().for_each(|t| t.swap(1, 2));
        assert_eq!(check(&inside_out), Err(MeshDefect::InsideOut));
        // Two closed meshes sharing one point: every edge is fine, the point is pinched.
        let one = small();
        let mut two = small();
        let offset = one.positions.len() as u32;
        let shared = one.triangles[0][0];
        two.positions.extend(one.positions.iter().map(|p| [p[0] + 30.0, p[1], p[2]]));
        for tri in &one.triangles {
            two.triangles.push(tri.map(|v| if v == shared { shared } else { v + offset }));
        }
        two.regions.extend(one.regions.iter().copied());
        assert_eq!(check(&two), Err(MeshDefect::PinchedPoint { point: shared }));
    }
}
