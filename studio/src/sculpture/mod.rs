//! Sculpture: a printable bas-relief plaque of the photo's subject, as a closed triangle
//! mesh written twice, as binary STL (millimetres, Z up, lying on the print bed) and as
//! GLB (glTF 2.0, metres, +Y up, standing upright and facing +Z).
//!
//! The steps, each in its own file:
//! 1. `foreground`: which pixels are the pet, from the image alone (a colour model of
//!    the border, texture and a centre prior, Otsu, then cleaning), with a centred oval
//!    when the subject cannot be told from its background (a photo it fills).
//! 2. `relief`: a height per grid point: the subject raised as a rounded pillow, fine
//!    detail from the photo's luminance on it, the background low, a thin frame, all on
//!    a 3 mm base; the longest side is 100 mm and the aspect ratio is kept.
//! 3. `mesh`: the top surface as a grid, side walls and a flat bottom, joined into a
//!    closed, consistently oriented 2-manifold (`mesh::check` proves it).
//! 4. `stl` and `glb`: the two files.
//!
//! Deterministic for a given photo: no randomness, no threads, no hash-map iteration.

mod field;
mod foreground;
mod glb;
mod mesh;
mod relief;
mod stl;

use image::RgbImage;
use image::imageops::{self, FilterType};

use super::{RenderContext, StudioError};

/// Grid cells along the photo's longest side: 192 × 144 cells for a 4:3 photo, about
/// 57k triangles.
const CELLS_ON_LONGEST_SIDE: u32 = 192;

/// A generated sculpture: the same closed mesh as STL and as GLB.
pub struct Sculpture {
    pub stl: Vec<u8>,
    pub glb: Vec<u8>,
    pub triangles: usize,
    /// Width, depth and height of the bounding box in millimetres, as printed (lying
    /// flat: width along the photo's x, depth along its y, height the relief's).
    pub size_mm: [f32; 3],
}

/// Turns a photo (at most 512 px on its longest side) into a relief sculpture.
pub(crate) fn sculpt(photo: &RgbImage, ctx: &RenderContext) -> Result<Sculpture, StudioError> {
    ctx.checkpoint(20, "finding the subject")?;
    let plate = relief::Plate::for_photo(photo.width(), photo.height(), CELLS_ON_LONGEST_SIDE);
    // One sample per grid point: every later step works at the grid's resolution.
    let samples = imageops::resize(photo, plate.columns as u32, plate.rows as u32, FilterType::Triangle);
    let subject = foreground::estimate(&samples);
    tracing::debug!(oval = subject.fallback, "sculpture subject estimated");

    ctx.checkpoint(40, "shaping the relief")?;
    let heights = relief::shape(&samples, &subject, &plate);

    ctx.checkpoint(60, "building the mesh")?;
    let mesh = mesh::build(&plate, &heights);
    debug_assert_eq!(mesh::check(&mesh), Ok(()));

    ctx.checkpoint(75, "writing STL and GLB")?;
    let stl = stl::write(&mesh);
    let glb = glb::write(&mesh);
    let (min, max) = mesh.bounds();
    Ok(Sculpture {
        stl,
        glb,
        triangles: mesh.triangles.len(),
        size_mm: [max[0] - min[0], max[1] - min[1], max[2] - min[2]],
    })
}

#[cfg(test)]
mod tests;
