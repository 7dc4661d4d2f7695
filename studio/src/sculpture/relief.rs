//! The height field of the plaque: a height in millimetres at every grid point.
//!
//! The subject is raised as a rounded pillow: its height follows the distance from its
//! outline along a quarter circle, so the edge rises steeply and the middle is broad
//! and flat-topped, as in a carved bas-relief. On it, the photo's luminance adds detail
//! (fine and medium high-pass bands, clamped, lighter = higher), so eyes, nose and fur
//! read as hollows and ridges. The background stays at the base; a narrow rounded
//! frame runs along the plate's edge.

use image::RgbImage;

use super::field::{blur, distance};
use super::foreground::Foreground;

/// The longest side of the plaque.
pub(super) const LONGEST_SIDE_MM: f32 = 100.0;
/// The solid plate under everything.
pub(super) const BASE_MM: f32 = 3.0;
/// The highest point of the relief above the base.
pub(super) const RELIEF_MM: f32 = 12.0;
/// The frame along the plate's edge: its height above the base and its flat width.
const FRAME_MM: f32 = 1.6;
const FRAME_WIDTH_MM: f32 = 2.5;
/// The frame's inner side slopes down over this width.
const FRAME_SLOPE_MM: f32 = 1.5;
/// A photo more elongated than this is stretched to it, so the plate stays printable.
const MAX_ASPECT: f32 = 4.0;

/// The plate's grid: `columns` × `rows` points spanning `width_mm` × `depth_mm`.
/// Grid point (i, j) samples the photo's column i and row j (row 0 is the photo's
/// top), and lies at x = i · cell width, y = (rows - 1 - j) · cell depth, so the photo
/// reads upright seen from above (+Z) with its top at the far (+Y) edge.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plate {
    pub columns: usize,
    pub rows: usize,
    pub width_mm: f32,
    pub depth_mm: f32,
}

impl Plate {
    /// The plate for a photo of `width` × `height` pixels: `cells` grid cells and
    /// `LONGEST_SIDE_MM` on the longest side, the aspect ratio kept (up to 4:1).
    pub fn for_photo(width: u32, height: u32, cells: u32) -> Plate {
        let aspect = (width.max(1) as f32 / height.max(1) as f32).clamp(1.0 / MAX_ASPECT, MAX_ASPECT);
        let cells = cells.max(2) as usize;
        let short_cells = |ratio: f32| ((cells as f32 * ratio).round() as usize).max(2);
        if aspect >= 1.0 {
            let rows = short_cells(1.0 / aspect);
            Plate { columns: cells + 1, rows: rows + 1, width_mm: LONGEST_SIDE_MM, depth_mm: LONGEST_SIDE_MM / aspect }
        } else {
            let columns = short_cells(aspect);
            Plate {
                columns: columns + 1,
                rows: cells + 1,
                width_mm: LONGEST_SIDE_MM * aspect,
                depth_mm: LONGEST_SIDE_MM,
            }
        }
    }

    pub fn x(&self, i: usize) -> f32 {
        self.width_mm * i as f32 / (self.columns - 1) as f32
    }

    pub fn y(&self, j: usize) -> f32 {
        self.depth_mm * (self.rows - 1 - j) as f32 / (self.rows - 1) as f32
    }

    /// The mean spacing of grid points.
    fn cell_mm(&self) -> f32 {
        (self.width_mm / (self.columns - 1) as f32 + self.depth_mm / (self.rows - 1) as f32) / 2.0
    }
}

/// The height (base included) at every grid point, row by row; `samples` and
/// `subject` have one pixel per grid point.
pub(super) fn shape(samples: &RgbImage, subject: &Foreground, plate: &Plate) -> Vec<f32> {
    let (w, h) = (plate.columns, plate.rows);
    debug_assert_eq!((samples.width() as usize, samples.height() as usize), (w, h));
    debug_assert_eq!((subject.width, subject.height), (w, h));

    // The pillow: a quarter circle of the distance from the outline, reaching its top
    // at 80% of the subject's greatest inner distance.
    let outside: Vec<bool> = subject.mask.iter().map(|&m| m <= 0.5).collect();
    let inner = distance(&outside, w, h, true);
    let ridge = (inner.iter().copied().fold(0.0, f32::max) * 0.8).max(1.0);
    let dome: Vec<f32> = inner
        .iter()
        .map(|&d| {
            let t = (d / ridge).min(1.0);
            (t * (2.0 - t)).sqrt()
        })
        .collect();
    let dome = blur(&dome, w, h, 1.0);

    // Detail: two high-pass bands of luminance, each clamped.
    let luma: Vec<f32> = samples
        .pixels()
        .map(|p| (0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])) / 255.0)
        .collect();
    let cell = plate.cell_mm();
    let smooth = blur(&luma, w, h, 0.8 / cell);
    let broad = blur(&luma, w, h, 5.0 / cell);
    let raw: Vec<f32> = (0..w * h)
        .map(|i| {
            let fine = ((luma[i] - smooth[i]) / 0.12).clamp(-1.0, 1.0);
            let medium = ((smooth[i] - broad[i]) / 0.2).clamp(-1.0, 1.0);
            (subject.mask[i] * (0.8 * dome[i] + 0.08 * fine + 0.12 * medium)).max(0.0)
        })
        .collect();
    let raw = blur(&raw, w, h, 0.6);

    // Scaled so the top 0.5% of the subject reaches the full relief height (a few
    // bright specks do not flatten the rest), then the frame and the base.
    let mut on_subject: Vec<f32> = raw.iter().zip(&subject.mask).filter(|(_, m)| **m > 0.5).map(|(r, _)| *r).collect();
    let top = if on_subject.is_empty() {
        raw.iter().copied().fold(0.0, f32::max)
    } else {
        let k = ((on_subject.len() as f32 * 0.995) as usize).min(on_subject.len() - 1);
        *on_subject.select_nth_unstable_by(k, f32::total_cmp).1
    };
    let scale = if top > 1e-6 { 1.0 / top } else { 0.0 };
    (0..w * h)
        .map(|i| {
            let (x, y) = (plate.x(i % w), plate.y(i / w));
            let relief = (raw[i] * scale).clamp(0.0, 1.0) * RELIEF_MM;
            BASE_MM + relief.max(frame(plate, x, y))
        })
        .collect()
}

/// The frame's height above the base at a point: flat along the edge, then a rounded
/// slope down to nothing.
fn frame(plate: &Plate, x: f32, y: f32) -> f32 {
    let from_edge = x.min(plate.width_mm - x).min(y).min(plate.depth_mm - y);
    let t = ((from_edge - FRAME_WIDTH_MM) / FRAME_SLOPE_MM).clamp(0.0, 1.0);
    FRAME_MM * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sculpture_plate_keeps_the_aspect_ratio_and_the_longest_side() {
        let landscape = Plate::for_photo(512, 384, 192);
        assert_eq!((landscape.columns, landscape.rows), (193, 145));
        assert_eq!((landscape.width_mm, landscape.depth_mm), (100.0, 75.0));
        let portrait = Plate::for_photo(300, 400, 192);
        assert_eq!((portrait.columns, portrait.rows), (145, 193));
        assert_eq!((portrait.width_mm, portrait.depth_mm), (75.0, 100.0));
        assert_eq!(portrait.x(portrait.columns - 1), 75.0);
        assert_eq!((portrait.y(0), portrait.y(portrait.rows - 1)), (100.0, 0.0));
        let sliver = Plate::for_photo(1, 512, 192);
        assert_eq!((sliver.width_mm, sliver.rows), (25.0, 193));
    }
}
