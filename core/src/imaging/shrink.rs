//! Making a picture smaller without holding it whole: rows stream in from a decoder and
//! are averaged in boxes of `factor × factor` pixels as they come, so a 6,300 px PNG
//! needed at 1,024 px never exists at full size in memory. The last step to the exact
//! size is `fast_image_resize` (SIMD).

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

/// The size of `width × height` fitted within `max_side` on its longest side, the aspect
/// ratio kept (as `image`'s `resize` computes it). A smaller picture keeps its size.
pub fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled = (u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest);
        u32::try_from(scaled).unwrap_or(max_side).max(1)
    };
    (scale(width), scale(height))
}

/// The largest whole factor that keeps the longest side at or above `max_side`: box
/// averaging by it loses nothing the final resize would have kept.
pub fn box_factor(width: u32, height: u32, max_side: u32) -> u32 {
    (width.max(height) / max_side.max(1)).max(1)
}

/// Averages rows of 8-bit pixels (grey, grey + alpha, RGB or RGBA; alpha is dropped, as
/// `to_rgb8` does) into an RGB picture `factor` times smaller on each side.
pub struct BoxShrinker {
    factor: u32,
    width: u32,
    out_width: u32,
    sums: Vec<u32>,
    rows_in_band: u32,
    out: Vec<u8>,
}

impl BoxShrinker {
    pub fn new(width: u32, height: u32, factor: u32) -> BoxShrinker {
        let out_width = width.div_ceil(factor);
        let out_height = height.div_ceil(factor);
        BoxShrinker {
            factor,
            width,
            out_width,
            sums: vec![0; out_width as usize * 3],
            rows_in_band: 0,
            out: Vec::with_capacity(out_width as usize * out_height as usize * 3),
        }
    }

    /// The bytes this holds at most, for a memory reservation.
    pub fn peak_bytes(width: u32, height: u32, factor: u32) -> u64 {
        let (w, h) = (u64::from(width.div_ceil(factor)), u64::from(height.div_ceil(factor)));
        w * h * 3 + w * 3 * 4
    }

    pub fn push_row(&mut self, row: &[u8], channels: usize) {
        let factor = self.factor as usize;
        for (x, pixel) in row.chunks_exact(channels).take(self.width as usize).enumerate() {
            let sum = &mut self.sums[x / factor * 3..][..3];
            let rgb = if channels >= 3 { [pixel[0], pixel[1], pixel[2]] } else { [pixel[0]; 3] };
            for (s, v) in sum.iter_mut().zip(rgb) {
                *s += u32::from(v);
            }
        }
        self.rows_in_band += 1;
        if self.rows_in_band == self.factor {
            self.flush_band();
        }
    }

    fn flush_band(&mut self) {
        let factor = self.factor;
        for ox in 0..self.out_width {
            let columns = factor.min(self.width - ox * factor);
            let count = columns * self.rows_in_band;
            for sum in &mut self.sums[ox as usize * 3..][..3] {
                self.out.push(((*sum + count / 2) / count) as u8);
                *sum = 0;
            }
        }
        self.rows_in_band = 0;
    }

    pub fn finish(mut self) -> RgbImage {
        if self.rows_in_band > 0 {
            self.flush_band();
        }
        let height = (self.out.len() / (self.out_width as usize * 3)) as u32;
        RgbImage::from_raw(self.out_width, height, self.out).expect("the buffer holds whole rows")
    }
}

/// `image` fitted within `max_side` with a bilinear filter (what the studio used with
/// `image`'s Triangle filter), with SIMD.
pub fn fit_rgb(image: RgbImage, max_side: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let (to_width, to_height) = fit_within(width, height, max_side);
    if (to_width, to_height) == (width, height) {
        return image;
    }
    let source = Image::from_vec_u8(width, height, image.into_raw(), PixelType::U8x3)
        .expect("an RGB buffer of its own dimensions");
    let mut target = Image::new(to_width, to_height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new().resize(&source, &mut target, &options).expect("same pixel type, non-empty sizes");
    RgbImage::from_raw(to_width, to_height, target.into_vec()).expect("an RGB buffer of the target size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_the_aspect_ratio_and_never_enlarges() {
        assert_eq!(fit_within(4032, 3024, 1024), (1024, 768));
        assert_eq!(fit_within(3024, 4032, 1024), (768, 1024));
        assert_eq!(fit_within(800, 600, 1024), (800, 600));
        assert_eq!(fit_within(10_000, 3, 512), (512, 1));
        assert_eq!(box_factor(6300, 6300, 1024), 6);
        assert_eq!(box_factor(800, 600, 1024), 1);
    }

    #[test]
    fn boxes_average_their_pixels_and_edge_boxes_count_only_what_they_hold() {
        // 5 × 3 grey, factor 2: boxes of 2 × 2, the last column and row partial.
        let rows: [[u8; 5]; 3] = [[0, 2, 4, 6, 8], [2, 4, 6, 8, 10], [100, 100, 100, 100, 200]];
        let mut shrinker = BoxShrinker::new(5, 3, 2);
        for row in &rows {
            shrinker.push_row(row, 1);
        }
        let small = shrinker.finish();
        assert_eq!(small.dimensions(), (3, 2));
        let firsts: Vec<u8> = small.pixels().map(|p| p.0[0]).collect();
        assert_eq!(firsts, [2, 6, 9, 100, 100, 200]);
        assert!(small.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]), "grey stays grey");
    }

    #[test]
    fn rgba_rows_lose_their_alpha() {
        let mut shrinker = BoxShrinker::new(2, 1, 1);
        shrinker.push_row(&[10, 20, 30, 0, 40, 50, 60, 255], 4);
        assert_eq!(shrinker.finish().into_raw(), [10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn a_resize_fits_the_longest_side() {
        let image = RgbImage::from_fn(400, 300, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let fitted = fit_rgb(image, 100);
        assert_eq!(fitted.dimensions(), (100, 75));
    }
}
