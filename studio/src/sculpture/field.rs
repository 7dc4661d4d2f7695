//! Operations on grids of values stored row by row (`w` columns, `h` rows): a Gaussian
//! blur and an exact Euclidean distance transform, shared by the subject estimate and
//! the relief.

/// An approximately Gaussian blur of standard deviation `sigma` (in cells): three box
/// blurs in each direction, each a running sum, so the cost does not grow with
/// `sigma`. Edges repeat the nearest value.
pub(super) fn blur(values: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    debug_assert_eq!(values.len(), w * h);
    // Three boxes of width 2r + 1 have a variance of 3 ((2r + 1)² - 1) / 12.
    let radius = (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0).round().max(0.0) as usize;
    if radius == 0 || w == 0 || h == 0 {
        return values.to_vec();
    }
    let mut out = values.to_vec();
    let mut line = Vec::new();
    for _ in 0..3 {
        for y in 0..h {
            line.clear();
            line.extend_from_slice(&out[y * w..(y + 1) * w]);
            box_line(&line, radius, |x, v| out[y * w + x] = v);
        }
        for x in 0..w {
            line.clear();
            line.extend((0..h).map(|y| out[y * w + x]));
            box_line(&line, radius, |y, v| out[y * w + x] = v);
        }
    }
    out
}

/// The mean of each window of `2 radius + 1` values along a line, the ends repeated.
fn box_line(line: &[f32], radius: usize, mut put: impl FnMut(usize, f32)) {
    let n = line.len() as isize;
    let at = |i: isize| f64::from(line[i.clamp(0, n - 1) as usize]);
    let r = radius as isize;
    let mut sum: f64 = (-r..=r).map(at).sum();
    let width = (2 * r + 1) as f64;
    for i in 0..n {
        put(i as usize, (sum / width) as f32);
        sum += at(i + r + 1) - at(i - r);
    }
}

/// For every cell, the Euclidean distance (in cells) to the nearest cell where `seed`
/// is true; 0 on the seeds. With `outside_is_seed`, the cells just beyond the grid
/// count as seeds too (so a region touching the edge ends there). Exact, in linear
/// time (Felzenszwalb and Huttenlocher's lower envelope of parabolas).
pub(super) fn distance(seed: &[bool], w: usize, h: usize, outside_is_seed: bool) -> Vec<f32> {
    debug_assert_eq!(seed.len(), w * h);
    let pad = usize::from(outside_is_seed);
    let (pw, ph) = (w + 2 * pad, h + 2 * pad);
    // Far enough for "no seed at all" yet finite, so the arithmetic stays exact.
    let far = ((pw * pw + ph * ph) as f64) * 4.0;
    let mut squared = vec![far; pw * ph];
    for y in 0..ph {
        for x in 0..pw {
            let inside = (pad..pad + h).contains(&y) && (pad..pad + w).contains(&x);
            if !inside || seed[(y - pad) * w + (x - pad)] {
                squared[y * pw + x] = 0.0;
            }
        }
    }
    let mut line = Vec::new();
    let mut result = Vec::new();
    for x in 0..pw {
        line.clear();
        line.extend((0..ph).map(|y| squared[y * pw + x]));
        parabola_envelope(&line, &mut result);
        for (y, d) in result.iter().enumerate() {
            squared[y * pw + x] = *d;
        }
    }
    for y in 0..ph {
        line.clear();
        line.extend_from_slice(&squared[y * pw..(y + 1) * pw]);
        parabola_envelope(&line, &mut result);
        squared[y * pw..(y + 1) * pw].copy_from_slice(&result);
    }
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            out.push(squared[(y + pad) * pw + x + pad].sqrt() as f32);
        }
    }
    out
}

/// The one-dimensional squared distance transform: `out[q] = min_p (q - p)² + f[p]`.
fn parabola_envelope(f: &[f64], out: &mut Vec<f64>) {
    let n = f.len();
    out.clear();
    if n == 0 {
        return;
    }
    let mut vertices = vec![0usize; n];
    let mut bounds = vec![0.0f64; n + 1];
    let mut k = 0;
    bounds[0] = f64::NEG_INFINITY;
    bounds[1] = f64::INFINITY;
    let intersection = |q: usize, p: usize| {
        let (qf, pf) = (q as f64, p as f64);
        ((f[q] + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf))
    };
    for q in 1..n {
        // bounds[0] is -inf, so this stops at k = 0 at the latest.
        let mut s = intersection(q, vertices[k]);
        while s <= bounds[k] {
            k -= 1;
            s = intersection(q, vertices[k]);
        }
        k += 1;
        vertices[k] = q;
        bounds[k] = s;
        bounds[k + 1] = f64::INFINITY;
    }
    let mut k = 0;
    for q in 0..n {
        while bounds[k + 1] < q as f64 {
            k += 1;
        }
        let d = q as f64 - vertices[k] as f64;
        out.push(d * d + f[vertices[k]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sculpture_distance_transform_matches_brute_force() {
        let (w, h) = (23, 17);
        let seed: Vec<bool> = (0..w * h).map(|i| (i * 7919 + i / 5) % 37 == 0).collect();
        for outside in [false, true] {
            let fast = distance(&seed, w, h, outside);
            for y in 0..h {
                for x in 0..w {
                    let mut best = f64::INFINITY;
                    for sy in -1..=h as i64 {
                        for sx in -1..=w as i64 {
                            let edge = sx < 0 || sy < 0 || sx >= w as i64 || sy >= h as i64;
                            let is_seed = if edge { outside } else { seed[sy as usize * w + sx as usize] };
                            if is_seed {
                                let d = ((sx - x as i64).pow(2) + (sy - y as i64).pow(2)) as f64;
                                best = best.min(d.sqrt());
                            }
                        }
                    }
                    assert!((f64::from(fast[y * w + x]) - best).abs() < 1e-4, "({x},{y}) outside={outside}");
                }
            }
        }
    }

    #[test]
    fn sculpture_blur_keeps_the_mean_of_a_constant_and_spreads_a_spike() {
        let (w, h) = (31, 21);
        assert!(blur(&vec![0.25; w * h], w, h, 3.0).iter().all(|v| (v - 0.25).abs() < 1e-6));
        let mut spike = vec![0.0; w * h];
        spike[10 * w + 15] = 1.0;
        let out = blur(&spike, w, h, 2.0);
        let total: f32 = out.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(out[10 * w + 15] < 0.2 && out[10 * w + 17] > 0.0);
    }
}
