//! Small image filters shared by the portrait styles and the sculpture: luminance,
//! grey conversion, a deterministic paper grain and Sobel gradients.

use image::{GrayImage, Luma, Rgb, RgbImage};

pub(crate) fn luminance(p: &Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}

pub(crate) fn gray(photo: &RgbImage) -> GrayImage {
    GrayImage::from_fn(photo.width(), photo.height(), |x, y| Luma([luminance(photo.get_pixel(x, y)) as u8]))
}

/// A deterministic "paper grain" value in [-1, 1] for a pixel.
pub(crate) fn grain(x: u32, y: u32) -> f32 {
    let mut h = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    (h & 0xFFFF) as f32 / 32_767.5 - 1.0
}

/// Sobel gradient magnitude of a grey image, scaled to 0..=1.
pub(crate) fn edges(g: &GrayImage) -> Vec<f32> {
    let (w, h) = (g.width() as usize, g.height() as usize);
    sobel_magnitude(w, h, |x, y| f32::from(g.get_pixel(x as u32, y as u32)[0]))
        .into_iter()
        .map(|m| (m / 1_442.0).min(1.0))
        .collect()
}

/// Sobel gradient magnitude (unscaled) of a `w`×`h` field read through `at`, with the
/// border pixels repeated outwards. Shared by the portrait styles and the
/// sculpture's subject finder.
pub(crate) fn sobel_magnitude(w: usize, h: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let v = |x: isize, y: isize| at(x.clamp(0, w as isize - 1) as usize, y.clamp(0, h as isize - 1) as usize);
    let mut out = vec![0.0; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = v(x + 1, y - 1) + 2.0 * v(x + 1, y) + v(x + 1, y + 1)
                - v(x - 1, y - 1)
                - 2.0 * v(x - 1, y)
                - v(x - 1, y + 1);
            let gy = v(x - 1, y + 1) + 2.0 * v(x, y + 1) + v(x + 1, y + 1)
                - v(x - 1, y - 1)
                - 2.0 * v(x, y - 1)
                - v(x + 1, y - 1);
            out[y as usize * w + x as usize] = (gx * gx + gy * gy).sqrt();
        }
    }
    out
}
