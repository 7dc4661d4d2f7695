//! Three more portrait styles: oil paint (a Kuwahara filter), pixel art (a small palette
//! found by k-means) and stained glass (Voronoi cells with lead lines). Each keeps the
//! photo's size and is deterministic for a given photo.

use image::{Rgb, RgbImage, imageops};

use crate::filters::{edges, grain, gray, luminance};
use crate::{RenderContext, StudioError};

/// Summed-area tables of R, G, B, luminance and luminance², one row and column larger
/// than the image, so any rectangle's sums cost four lookups.
struct Integrals {
    w: usize,
    sums: Vec<[f64; 5]>,
}

impl Integrals {
    fn new(photo: &RgbImage) -> Integrals {
        let (w, h) = (photo.width() as usize + 1, photo.height() as usize + 1);
        let mut sums = vec![[0.0; 5]; w * h];
        for y in 1..h {
            let mut row = [0.0; 5];
            for x in 1..w {
                let p = photo.get_pixel(x as u32 - 1, y as u32 - 1);
                let l = f64::from(luminance(p));
                let values = [f64::from(p[0]), f64::from(p[1]), f64::from(p[2]), l, l * l];
                for (acc, v) in row.iter_mut().zip(values) {
                    *acc += v;
                }
                let above = sums[(y - 1) * w + x];
                sums[y * w + x] = std::array::from_fn(|i| row[i] + above[i]);
            }
        }
        Integrals { w, sums }
    }

    /// Sums over the pixels x0..x1, y0..y1 (exclusive ends) and their count.
    fn rect(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> ([f64; 5], f64) {
        let at = |x: usize, y: usize| self.sums[y * self.w + x];
        let (a, b, c, d) = (at(x1, y1), at(x0, y1), at(x1, y0), at(x0, y0));
        (std::array::from_fn(|i| a[i] - b[i] - c[i] + d[i]), ((x1 - x0) * (y1 - y0)) as f64)
    }
}

/// Oil paint: every pixel takes the mean colour of whichever of its four neighbouring
/// squares is most uniform (Kuwahara), which flattens texture into strokes while edges
/// stay sharp; then richer colour and a canvas weave.
pub(super) fn oil_paint(photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    let (w, h) = photo.dimensions();
    let radius = ((w.max(h) as f32 / 120.0).round() as usize).clamp(2, 12);
    ctx.checkpoint(20, "priming the canvas")?;
    let integrals = Integrals::new(&photo);
    ctx.checkpoint(45, "laying strokes")?;
    let (wu, hu) = (w as usize, h as usize);
    let mut out = RgbImage::new(w, h);
    for y in 0..hu {
        if y % 256 == 0 {
            ctx.checkpoint(45 + (40 * y / hu) as u8, "laying strokes")?;
        }
        for x in 0..wu {
            let (xl, xr) = (x.saturating_sub(radius), (x + radius + 1).min(wu));
            let (yt, yb) = (y.saturating_sub(radius), (y + radius + 1).min(hu));
            let quadrants = [(xl, yt, x + 1, y + 1), (x, yt, xr, y + 1), (xl, y, x + 1, yb), (x, y, xr, yb)];
            let mut best = ([0.0; 5], 1.0, f64::INFINITY);
            for (x0, y0, x1, y1) in quadrants {
                let (s, n) = integrals.rect(x0, y0, x1, y1);
                let mean = s[3] / n;
                let variance = s[4] / n - mean * mean;
                if variance < best.2 {
                    best = (s, n, variance);
                }
            }
            let (s, n, _) = best;
            let mean = [s[0] / n, s[1] / n, s[2] / n];
            let l = (mean[0] + mean[1] + mean[2]) / 3.0;
            let weave = f64::from(grain(x as u32 / 2, y as u32 / 3)) * 4.0;
            let px = mean.map(|c| ((l + (c - l) * 1.3) + weave).clamp(0.0, 255.0) as u8);
            out.put_pixel(x as u32, y as u32, Rgb(px));
        }
    }
    Ok(out)
}

/// Pixel art: the photo shrunk to about 48 pixels across, its colours reduced to a
/// palette of 10 found by k-means (seeded from the photo's own tones, so it is
/// deterministic), outlines darkened, then enlarged with hard pixel edges.
pub(super) fn pixel_art(photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    let (w, h) = photo.dimensions();
    let scale = (w.max(h) as f32 / 48.0).max(1.0);
    let (sw, sh) = (((w as f32 / scale).round() as u32).max(1), ((h as f32 / scale).round() as u32).max(1));
    ctx.checkpoint(25, "shrinking")?;
    let small = imageops::resize(&photo, sw, sh, imageops::FilterType::Triangle);
    ctx.checkpoint(45, "choosing the palette")?;
    let palette = kmeans_palette(&small, 10);
    let outline = edges(&gray(&small));
    ctx.checkpoint(70, "placing pixels")?;
    let nearest = |p: &Rgb<u8>| {
        palette
            .iter()
            .min_by_key(|c| (0..3).map(|i| (i32::from(c[i]) - i32::from(p[i])).pow(2)).sum::<i32>())
            .copied()
            .unwrap_or([0, 0, 0])
    };
    let art = RgbImage::from_fn(sw, sh, |x, y| {
        let c = nearest(small.get_pixel(x, y));
        if outline[(y * sw + x) as usize] > 0.2 { Rgb(c.map(|v| (f32::from(v) * 0.35) as u8)) } else { Rgb(c) }
    });
    Ok(imageops::resize(&art, w, h, imageops::FilterType::Nearest))
}

fn kmeans_palette(image: &RgbImage, k: usize) -> Vec<[u8; 3]> {
    let mut pixels: Vec<[f32; 3]> = image.pixels().map(|p| p.0.map(f32::from)).collect();
    if pixels.is_empty() {
        return vec![[0, 0, 0]];
    }
    // Seeds spread over the tonal range: the pixels at evenly spaced luminance ranks.
    pixels.sort_by(|a, b| (a[0] + a[1] + a[2]).total_cmp(&(b[0] + b[1] + b[2])));
    let mut centres: Vec<[f32; 3]> = (0..k).map(|i| pixels[(i * (pixels.len() - 1)) / (k - 1).max(1)]).collect();
    for _ in 0..10 {
        let mut sums = vec![([0.0f32; 3], 0u32); k];
        for p in &pixels {
            let closest =
                (0..k).min_by(|&a, &b| distance(p, &centres[a]).total_cmp(&distance(p, &centres[b]))).unwrap_or(0);
            let (sum, n) = &mut sums[closest];
            for (acc, v) in sum.iter_mut().zip(p) {
                *acc += v;
            }
            *n += 1;
        }
        for (centre, (sum, n)) in centres.iter_mut().zip(sums) {
            if n > 0 {
                *centre = sum.map(|s| s / n as f32);
            }
        }
    }
    centres.into_iter().map(|c| c.map(|v| v.round().clamp(0.0, 255.0) as u8)).collect()
}

fn distance(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum()
}

/// A deterministic offset in [0, 1) for grid cell (cx, cy), one per axis.
fn jitter(cx: i64, cy: i64, axis: u32) -> f32 {
    let v = grain((cx as u32).wrapping_mul(7).wrapping_add(axis), (cy as u32).wrapping_mul(13).wrapping_add(axis * 31));
    (v + 1.0) / 2.0 * 0.999
}

/// Stained glass: the photo cut into irregular panes (Voronoi cells around one jittered
/// seed per grid square), each pane one flat, slightly glowing colour, joined by dark
/// lead where two panes meet.
pub(super) fn stained_glass(photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    let (w, h) = photo.dimensions();
    let cell = (w.max(h) as f32 / 36.0).max(6.0);
    let (cols, rows) = ((w as f32 / cell).ceil() as i64 + 1, (h as f32 / cell).ceil() as i64 + 1);
    let seed = |cx: i64, cy: i64| ((cx as f32 + jitter(cx, cy, 0)) * cell, (cy as f32 + jitter(cx, cy, 1)) * cell);
    ctx.checkpoint(25, "cutting panes")?;
    // For each pixel: its pane and how close it is to the next one (for the lead).
    let mut pane = vec![0usize; (w * h) as usize];
    let mut margin = vec![0f32; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let (gx, gy) = ((fx / cell) as i64, (fy / cell) as i64);
            let (mut first, mut second, mut id) = (f32::INFINITY, f32::INFINITY, 0usize);
            for cy in gy - 1..=gy + 1 {
                for cx in gx - 1..=gx + 1 {
                    if cx < 0 || cy < 0 || cx >= cols || cy >= rows {
                        continue;
                    }
                    let (sx, sy) = seed(cx, cy);
                    let d = ((sx - fx).powi(2) + (sy - fy).powi(2)).sqrt();
                    if d < first {
                        second = first;
                        first = d;
                        id = (cy * cols + cx) as usize;
                    } else if d < second {
                        second = d;
                    }
                }
            }
            let i = (y * w + x) as usize;
            pane[i] = id;
            margin[i] = second - first;
        }
    }
    ctx.checkpoint(55, "colouring glass")?;
    let mut sums = vec![([0u64; 3], 0u64); (cols * rows) as usize];
    for (i, p) in photo.pixels().enumerate() {
        let s = &mut sums[pane[i]];
        for c in 0..3 {
            s.0[c] += u64::from(p[c]);
        }
        s.1 += 1;
    }
    ctx.checkpoint(80, "leading")?;
    let lead = (cell / 9.0).max(1.2);
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        if margin[i] < lead {
            return Rgb([28, 24, 22]);
        }
        let (sum, n) = sums[pane[i]];
        let mean = sum.map(|s| s as f32 / n.max(1) as f32);
        let l = (mean[0] + mean[1] + mean[2]) / 3.0;
        // Glass glows: more saturated, and lighter in a few steps towards the middle.
        let glow = ((margin[i] / cell).min(0.5) * 6.0).floor() * 5.0;
        Rgb(mean.map(|c| (l + (c - l) * 1.45 + glow + 10.0).clamp(0.0, 255.0) as u8))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured photo: a bright disc (the "pet") on a darker, noisy background.
    fn photo() -> RgbImage {
        RgbImage::from_fn(120, 90, |x, y| {
            let inside = (x as f32 - 60.0).powi(2) + (y as f32 - 45.0).powi(2) < 900.0;
            let noise = grain(x, y) * 40.0;
            let base = if inside { [210.0, 160.0, 90.0] } else { [60.0, 90.0, 120.0] };
            Rgb(base.map(|c: f32| (c + noise).clamp(0.0, 255.0) as u8))
        })
    }

    fn colours(image: &RgbImage) -> usize {
        let mut all: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        all.sort();
        all.dedup();
        all.len()
    }

    /// Mean absolute difference between horizontal neighbours: the photo's texture.
    fn roughness(image: &RgbImage) -> f32 {
        let g = gray(image);
        let (w, h) = g.dimensions();
        let mut total = 0.0;
        for y in 0..h {
            for x in 1..w {
                total += f32::from(g.get_pixel(x, y)[0].abs_diff(g.get_pixel(x - 1, y)[0]));
            }
        }
        total / ((w - 1) * h) as f32
    }

    #[test]
    fn oil_paint_smooths_texture_into_strokes() {
        let out = oil_paint(photo(), &RenderContext::detached()).expect("renders");
        assert_eq!(out.dimensions(), (120, 90));
        assert!(roughness(&out) < roughness(&photo()) * 0.6, "{} vs {}", roughness(&out), roughness(&photo()));
        // The subject stays where it was: the centre is still bright, the corner dark.
        let (centre, corner) = (out.get_pixel(60, 45), out.get_pixel(5, 5));
        assert!(luminance(centre) > luminance(corner) + 30.0, "centre {centre:?}, corner {corner:?}");
    }

    #[test]
    fn pixel_art_has_big_pixels_and_a_small_palette() {
        let out = pixel_art(photo(), &RenderContext::detached()).expect("renders");
        assert_eq!(out.dimensions(), (120, 90));
        // 10 palette colours, each also in its darkened outline form.
        assert!(colours(&out) <= 20, "{} colours", colours(&out));
        // Blocks: most pixels equal their right-hand neighbour.
        let same = (0..90)
            .flat_map(|y| (1..120).map(move |x| (x, y)))
            .filter(|&(x, y)| out.get_pixel(x, y) == out.get_pixel(x - 1, y))
            .count();
        assert!(same as f32 > 0.4 * (119 * 90) as f32, "{same} equal neighbours");
    }

    #[test]
    fn stained_glass_has_flat_panes_and_lead() {
        let out = stained_glass(photo(), &RenderContext::detached()).expect("renders");
        assert_eq!(out.dimensions(), (120, 90));
        let lead = out.pixels().filter(|p| p.0 == [28, 24, 22]).count() as f32 / (120.0 * 90.0);
        assert!((0.05..0.5).contains(&lead), "lead covers {lead}");
        // Flat panes: far more equal neighbours than in the noisy photo.
        let flat = |image: &RgbImage| {
            (0..90)
                .flat_map(|y| (1..120).map(move |x| (x, y)))
                .filter(|&(x, y)| image.get_pixel(x, y) == image.get_pixel(x - 1, y))
                .count()
        };
        assert!(flat(&out) > 3 * flat(&photo()) && flat(&out) > 5_000, "{} vs {}", flat(&out), flat(&photo()));
        assert_eq!(out, stained_glass(photo(), &RenderContext::detached()).expect("renders"), "deterministic");
    }
}
