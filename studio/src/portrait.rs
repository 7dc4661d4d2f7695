//! Portrait styles: each is a chain of classic image filters over the pet photo.

use image::{GrayImage, Luma, Rgb, RgbImage, imageops};

use crate::filters::{edges, grain, gray};
use crate::{RenderContext, StudioError};

pub(crate) fn render(style: &str, photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    match style {
        "watercolor" => watercolor(photo, ctx),
        "pencil_sketch" => pencil_sketch(photo, ctx),
        "pop_art" => pop_art(photo, ctx),
        "oil_paint" => crate::painterly::oil_paint(photo, ctx),
        "pixel_art" => crate::painterly::pixel_art(photo, ctx),
        "stained_glass" => crate::painterly::stained_glass(photo, ctx),
        other => Err(StudioError::UnknownStyle(other.to_owned())),
    }
}

/// Flattened colour washes, pigment pooling at the edges, paper texture, lifted whites.
fn watercolor(photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    let side = photo.width().max(photo.height()) as f32;
    ctx.checkpoint(25, "softening")?;
    let soft = imageops::fast_blur(&photo, (side / 180.0).max(1.5));
    ctx.checkpoint(45, "washing")?;
    let outline = edges(&gray(&imageops::fast_blur(&photo, 1.0)));
    ctx.checkpoint(65, "pigment")?;
    let (w, h) = photo.dimensions();
    let levels = 6.0;
    let out = RgbImage::from_fn(w, h, |x, y| {
        let p = soft.get_pixel(x, y);
        let edge = outline[(y * w + x) as usize];
        let paper = grain(x / 2, y / 2) * 6.0;
        let mut c = [0u8; 3];
        for (i, v) in p.0.iter().enumerate() {
            // Quantise softly: halfway between the wash level and the original tone.
            let v = f32::from(*v) / 255.0;
            let washed = ((v * levels).round() / levels) * 0.6 + v * 0.4;
            // Lift towards white like diluted pigment, then darken where pigment pools.
            let lifted = washed * 0.82 + 0.18;
            let pooled = lifted * (1.0 - 0.55 * edge.powf(0.8));
            c[i] = (pooled * 255.0 + paper).clamp(0.0, 255.0) as u8;
        }
        Rgb(c)
    });
    Ok(out)
}

/// A graphite drawing: colour dodge of the grey image with its inverted blur, then
/// hatching that follows the darker tones, on warm paper.
fn pencil_sketch(photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    let side = photo.width().max(photo.height()) as f32;
    let g = gray(&photo);
    ctx.checkpoint(30, "tracing")?;
    let inverted = GrayImage::from_fn(g.width(), g.height(), |x, y| Luma([255 - g.get_pixel(x, y)[0]]));
    let blurred = imageops::fast_blur(&inverted, (side / 90.0).max(2.0));
    ctx.checkpoint(60, "shading")?;
    let (w, h) = g.dimensions();
    let out = RgbImage::from_fn(w, h, |x, y| {
        let base = f32::from(g.get_pixel(x, y)[0]);
        let b = f32::from(blurred.get_pixel(x, y)[0]);
        let dodge = (base * 255.0 / (256.0 - b)).min(255.0);
        // Diagonal hatching in the shadows.
        let tone = base / 255.0;
        let hatch = if tone < 0.45 && (x + y) % 6 == 0 { 0.78 } else { 1.0 };
        let v = (dodge * hatch + grain(x, y) * 5.0).clamp(0.0, 255.0);
        Rgb([v as u8, (v * 0.98) as u8, (v * 0.93) as u8])
    });
    Ok(out)
}

/// Four screen-printed panels, each posterised to its own bold palette.
fn pop_art(photo: RgbImage, ctx: &RenderContext) -> Result<RgbImage, StudioError> {
    const PALETTES: [[[u8; 3]; 3]; 4] = [
        [[20, 20, 90], [240, 40, 120], [255, 230, 0]],
        [[10, 70, 40], [255, 120, 0], [120, 230, 255]],
        [[80, 0, 80], [0, 200, 180], [255, 255, 160]],
        [[120, 0, 0], [40, 90, 255], [255, 200, 220]],
    ];
    let (w, h) = photo.dimensions();
    let (pw, ph) = ((w / 2).max(1), (h / 2).max(1));
    ctx.checkpoint(30, "screening")?;
    let small = imageops::resize(&photo, pw, ph, imageops::FilterType::Triangle);
    let g = gray(&small);
    let outline = edges(&g);
    // Bands split this photo's own tonal range in thirds, so a subject and a background
    // of similar brightness still land in different inks.
    let (low, high) = tertiles(&g);
    ctx.checkpoint(60, "printing")?;
    let mut out = RgbImage::new(w, h);
    for (panel, palette) in PALETTES.iter().enumerate() {
        let (ox, oy) = ((panel as u32 % 2) * pw, (panel as u32 / 2) * ph);
        for y in 0..ph {
            for x in 0..pw {
                let (tx, ty) = (ox + x, oy + y);
                if tx >= w || ty >= h {
                    continue;
                }
                let v = g.get_pixel(x, y)[0];
                let band = if v < low {
                    0
                } else if v < high {
                    1
                } else {
                    2
                };
                let colour = if outline[(y * pw + x) as usize] > 0.2 { [10, 10, 10] } else { palette[band] };
                out.put_pixel(tx, ty, Rgb(colour));
            }
        }
    }
    Ok(out)
}

/// The grey levels below which a third and two thirds of the pixels lie.
fn tertiles(g: &GrayImage) -> (u8, u8) {
    let mut histogram = [0u64; 256];
    for p in g.pixels() {
        histogram[usize::from(p[0])] += 1;
    }
    let total: u64 = histogram.iter().sum();
    let level_at = |share: u64| {
        let mut seen = 0;
        for (level, count) in histogram.iter().enumerate() {
            seen += count;
            if seen * 3 >= total * share {
                return (level as u8).saturating_add(1);
            }
        }
        255
    };
    let (low, high) = (level_at(1), level_at(2));
    (low, high.max(low.saturating_add(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 128]))
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f32 {
        let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
        total as f32 / a.as_raw().len() as f32
    }

    #[test]
    fn each_style_visibly_transforms_the_photo_and_styles_differ() {
        let ctx = RenderContext::detached();
        let styles = ["watercolor", "pencil_sketch", "pop_art", "oil_paint", "pixel_art", "stained_glass"];
        let outs: Vec<RgbImage> = styles.iter().map(|s| render(s, photo(), &ctx).expect("renders")).collect();
        for (s, out) in styles.iter().zip(&outs) {
            assert_eq!(out.dimensions(), (64, 48));
            assert!(mean_abs_diff(out, &photo()) > 8.0, "{s} is too close to the photo");
        }
        for (i, a) in outs.iter().enumerate() {
            for (j, b) in outs.iter().enumerate().skip(i + 1) {
                assert!(mean_abs_diff(a, b) > 4.0, "{} and {} look alike", styles[i], styles[j]);
            }
        }
    }

    #[test]
    fn pencil_sketch_is_nearly_monochrome() {
        let out = render("pencil_sketch", photo(), &RenderContext::detached()).expect("renders");
        assert!(out.pixels().all(|p| p[0].abs_diff(p[2]) <= 20));
    }

    #[test]
    fn pop_art_uses_only_its_palettes() {
        let out = render("pop_art", photo(), &RenderContext::detached()).expect("renders");
        let mut colours: Vec<[u8; 3]> = out.pixels().map(|p| p.0).collect();
        colours.sort();
        colours.dedup();
        assert!(colours.len() <= 13, "{} colours", colours.len());
    }
}
