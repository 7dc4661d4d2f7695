//! Binary STL: an 80-byte header, the triangle count (u32), then per triangle its unit
//! outward normal, its three corners counter-clockwise seen from outside (12 × f32)
//! and a zero attribute (u16), all little-endian. Units are millimetres, Z up: the
//! plaque lies on the print bed with its relief upward.

use super::mesh::{Mesh, unit};

/// Not starting with "solid", so no reader takes the file for ASCII STL.
const HEADER: &[u8] = b"PetPortrait relief plaque, binary STL, millimetres, Z up";

pub(super) fn write(mesh: &Mesh) -> Vec<u8> {
    let count = mesh.triangles.len();
    let mut out = Vec::with_capacity(84 + 50 * count);
    out.extend_from_slice(HEADER);
    out.resize(80, b' ');
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (t, tri) in mesh.triangles.iter().enumerate() {
        for c in unit(mesh.area_normal(t)) {
            out.extend_from_slice(&(c as f32).to_le_bytes());
        }
        for &v in tri {
            for c in mesh.positions[v as usize] {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    out
}
