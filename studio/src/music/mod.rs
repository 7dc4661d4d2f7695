//! Music from a pet photo: a short, deterministic piece whose key, tempo, mood, timbre and
//! melody are read from the photo, rendered by a small synthesiser to a WAV.
//!
//! The pipeline is `analysis` (colour, light, contrast, texture and a coarse luminance map of
//! the photo) → `score` (harmony, a singable melody, bass, pad and drums as notes on a beat
//! grid) → `synth` (envelope-shaped oscillators and synthesised drums mixed in f32, normalised
//! to -1.1 dBFS) → `wav` (16-bit PCM). The only randomness is a PRNG seeded from the
//! photo's pixels, so the same photo always gives the same bytes.

mod accompaniment;
mod analysis;
mod notation;
mod score;
mod synth;
mod wav;

#[cfg(test)]
mod tests;

use image::RgbImage;

use super::{RenderContext, StudioError};

/// What the composer made of a photo.
#[derive(Clone, Debug)]
pub struct Composition {
    pub wav: Vec<u8>,
    /// For example "A minor".
    pub key: String,
    pub tempo_bpm: u32,
    /// For example "calm", "bright", "dreamy".
    pub mood: &'static str,
    pub duration_seconds: f32,
}

/// Composes and renders the piece of a photo (at most 512 px on its longest side).
pub(crate) fn compose(photo: &RgbImage, ctx: &RenderContext) -> Result<Composition, StudioError> {
    ctx.checkpoint(20, "analysing")?;
    let features = analysis::analyse(photo);
    ctx.checkpoint(30, "composing")?;
    let score = score::write(&features);
    let mix = synth::render(&score, synth::Stems::ALL, ctx)?;
    ctx.checkpoint(82, "mixing")?;
    let samples = synth::master(mix);
    ctx.checkpoint(85, "encoding")?;
    Ok(Composition {
        wav: wav::encode(&samples, synth::SAMPLE_RATE),
        key: score.key(),
        tempo_bpm: score.tempo,
        mood: score.mood,
        duration_seconds: samples.len() as f32 / synth::SAMPLE_RATE as f32,
    })
}
