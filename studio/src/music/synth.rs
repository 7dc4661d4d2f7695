//! The synthesiser: band-limited wavetable and FM voices shaped by ADSR envelopes,
//! synthesised drums, a dotted-eighth echo, mixed in f32 and normalised to -1.1 dBFS.
//!
//! Every sound starts and ends at zero gain (notes through `Envelope::shape`, drums
//! through `drum_gain`), so no note boundary can click.

use std::f32::consts::{PI, TAU};

use super::notation::{Drum, Hit, Note, Rng, Score, Timbre};
use crate::{RenderContext, StudioError};

pub(super) const SAMPLE_RATE: u32 = 44_100;
const SR: f32 = SAMPLE_RATE as f32;
/// The loudest sample after mastering: -1.1 dBFS, so that rounding to 16 bits stays
/// under the -1 dBFS ceiling.
const PEAK: f32 = 0.881;
/// Seconds of audio rendered between two progress reports.
const PROGRESS_EVERY_SECONDS: f64 = 4.0;

/// Which parts to render (all of them, except in tests that listen to one part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stems {
    pub melody: bool,
    pub bass: bool,
    pub pad: bool,
    pub drums: bool,
}

impl Stems {
    pub const ALL: Stems = Stems { melody: true, bass: true, pad: true, drums: true };
}

/// Attack, decay (a time constant), sustain level and release, in seconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Envelope {
    pub attack: f32,
    pub decay: f32,
    pub sustain: f32,
    pub release: f32,
}

impl Envelope {
    /// The gain of every sample of a note held `gate` seconds: a raised-cosine attack
    /// from exactly 0, an exponential decay towards the sustain level, and after the gate
    /// a quadratic release from wherever the level is to exactly 0 on the last sample.
    pub fn shape(&self, gate: f32) -> Vec<f32> {
        let held = (gate.max(0.0) * SR).round() as usize;
        let attack = ((self.attack * SR).round() as usize).max(1);
        let release = ((self.release * SR).round() as usize).max(1);
        let fall = (-1.0 / (self.decay.max(1e-3) * SR)).exp();
        let mut out = Vec::with_capacity(held + release + 1);
        let mut above_sustain = 1.0 - self.sustain;
        for i in 0..held {
            if i < attack {
                out.push(0.5 - 0.5 * (PI * i as f32 / attack as f32).cos());
            } else {
                out.push(self.sustain + above_sustain);
                above_sustain *= fall;
            }
        }
        let from = out.last().copied().unwrap_or(0.0);
        out.extend((1..=release).map(|j| {
            let left = 1.0 - j as f32 / release as f32;
            from * left * left
        }));
        out
    }
}

pub(super) const LEAD_WARM: Envelope = Envelope { attack: 0.004, decay: 0.9, sustain: 0.3, release: 0.25 };
pub(super) const LEAD_COOL: Envelope = Envelope { attack: 0.025, decay: 0.4, sustain: 0.65, release: 0.3 };
pub(super) const PAD_WARM: Envelope = Envelope { attack: 0.35, decay: 1.5, sustain: 0.75, release: 0.7 };
pub(super) const PAD_COOL: Envelope = Envelope { attack: 0.5, decay: 2.0, sustain: 0.85, release: 0.9 };
pub(super) const BASS: Envelope = Envelope { attack: 0.006, decay: 0.35, sustain: 0.6, release: 0.08 };

/// Mix levels (before the final normalisation).
const LEAD_LEVEL: f32 = 0.30;
const PAD_LEVEL: f32 = 0.085;
const BASS_LEVEL: f32 = 0.45;
const KICK_LEVEL: f32 = 0.55;
const SNARE_LEVEL: f32 = 0.3;
const HAT_LEVEL: f32 = 0.09;
/// How much of the melody and the pad goes to the echo, and how loud the echo returns.
const LEAD_SEND: f32 = 0.35;
const PAD_SEND: f32 = 0.15;
const ECHO_FEEDBACK: f32 = 0.35;
const ECHO_RETURN: f32 = 0.3;

const TABLE_SIZE: usize = 2048;
const _: () = assert!(TABLE_SIZE.is_power_of_two());

/// One cycle of a waveform built from a few harmonics (so it cannot alias at the
/// pitches it is used for), read with linear interpolation.
struct Table(Vec<f32>);

impl Table {
    fn additive(partials: &[(f32, f32)]) -> Table {
        let mut t: Vec<f32> = (0..=TABLE_SIZE)
            .map(|i| {
                let x = i as f32 / TABLE_SIZE as f32;
                partials.iter().map(|(h, a)| a * (TAU * h * x).sin()).sum()
            })
            .collect();
        let peak = t.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        t.iter_mut().for_each(|v| *v /= peak);
        Table(t)
    }

    /// The value at `phase` cycles (any real number of modest size).
    #[inline]
    fn at(&self, phase: f32) -> f32 {
        // floor() by hand: on baseline x86-64 the library call costs more than the rest.
        let x = phase * TABLE_SIZE as f32;
        let truncated = x as i32;
        let whole = truncated - i32::from(x < truncated as f32);
        // The table size is a power of two: masking wraps negative and large phases too.
        let i = (whole as usize) & (TABLE_SIZE - 1);
        let a = self.0[i];
        a + (self.0[i + 1] - a) * (x - whole as f32)
    }
}

struct Tables {
    sine: Table,
    saw: Table,
    organ: Table,
    bass: Table,
}

impl Tables {
    fn new() -> Self {
        let saw: Vec<(f32, f32)> = (1..=16).map(|n| (n as f32, 1.0 / n as f32)).collect();
        Tables {
            sine: Table::additive(&[(1.0, 1.0)]),
            saw: Table::additive(&saw),
            organ: Table::additive(&[(1.0, 1.0), (2.0, 0.4), (3.0, 0.15), (4.0, 0.1)]),
            bass: Table::additive(&[(1.0, 1.0), (2.0, 0.45), (3.0, 0.18), (4.0, 0.08), (5.0, 0.04)]),
        }
    }
}

/// A phase in cycles that grew by less than one cycle, back into [0, 1).
#[inline]
fn wrap(phase: f32) -> f32 {
    if phase >= 1.0 { phase - 1.0 } else { phase }
}

fn frequency(midi: i32) -> f32 {
    440.0 * 2f32.powf((midi - 69) as f32 / 12.0)
}

/// Adds `gain × envelope × oscillator` from sample `start` into `dry`, and `send` times
/// that into the echo bus.
fn play(buses: &mut Buses, start: usize, env: &[f32], gain: f32, send: f32, mut osc: impl FnMut() -> f32) {
    let end = (start + env.len()).min(buses.dry.len());
    if start >= end {
        return;
    }
    let dry = &mut buses.dry[start..end];
    let wet = &mut buses.send[start..end];
    for ((d, w), e) in dry.iter_mut().zip(wet.iter_mut()).zip(env) {
        let v = gain * e * osc();
        *d += v;
        *w += send * v;
    }
}

struct Buses {
    dry: Vec<f32>,
    send: Vec<f32>,
}

enum Part<'a> {
    Lead(&'a Note),
    Bass(&'a Note),
    Pad(&'a Note),
    Drum(usize, &'a Hit),
}

/// Renders the score in f32, reporting progress (35 to 80 %) every few seconds of audio.
pub(super) fn render(score: &Score, stems: Stems, ctx: &RenderContext) -> Result<Vec<f32>, StudioError> {
    let spb = score.seconds_per_beat();
    let duration = score.duration_seconds();
    let total = (duration * f64::from(SAMPLE_RATE)).round() as usize;
    let mut buses = Buses { dry: vec![0.0; total], send: vec![0.0; total] };
    let tables = Tables::new();

    let mut parts: Vec<(f64, Part<'_>)> = Vec::new();
    if stems.melody {
        parts.extend(score.melody.iter().map(|n| (n.beat, Part::Lead(n))));
    }
    if stems.bass {
        parts.extend(score.bass.iter().map(|n| (n.beat, Part::Bass(n))));
    }
    if stems.pad {
        parts.extend(score.pad.iter().map(|n| (n.beat, Part::Pad(n))));
    }
    if stems.drums {
        parts.extend(score.drums.iter().enumerate().map(|(i, h)| (h.beat, Part::Drum(i, h))));
    }
    parts.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut next_report = 0.0;
    for (beat, part) in parts {
        let seconds = beat * spb;
        if seconds >= next_report {
            let percent = 35 + (45.0 * seconds / duration) as u8;
            ctx.checkpoint(percent.min(80), "rendering audio")?;
            next_report = seconds + PROGRESS_EVERY_SECONDS;
        }
        let start = (seconds * f64::from(SAMPLE_RATE)).round() as usize;
        let gate = |n: &Note| (n.gate * spb) as f32;
        match part {
            Part::Lead(n) => lead(&mut buses, &tables, score.timbre, start, gate(n), n),
            Part::Bass(n) => bass(&mut buses, &tables, start, gate(n), n),
            Part::Pad(n) => pad(&mut buses, &tables, score, start, gate(n), n),
            Part::Drum(i, h) => drum(&mut buses, start, h, score.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }
    let delay = (0.75 * spb * f64::from(SAMPLE_RATE)).round() as usize;
    echo(&buses.send, &mut buses.dry, delay);
    Ok(buses.dry)
}

/// The melody: warm photos play a two-operator FM electric piano (the brightness of its
/// attack fades like a struck tine), cool ones a glassy bell-flute with a delayed vibrato.
fn lead(buses: &mut Buses, t: &Tables, timbre: Timbre, start: usize, gate: f32, n: &Note) {
    let f = frequency(n.midi);
    let inc = f / SR;
    let vel = n.velocity;
    // Keyboard scaling: high notes get less modulation, as on the instruments imitated,
    // so their sidebands stay mellow (and far below Nyquist).
    let scale = (523.0 / f).min(1.0);
    let mut phase = 0f32;
    match timbre {
        Timbre::Warm => {
            let env = LEAD_WARM.shape(gate);
            let mut index = (0.8 + 1.6 * vel) * scale;
            let fade = (-1.0 / (0.3 * SR)).exp();
            play(buses, start, &env, LEAD_LEVEL * vel, LEAD_SEND, || {
                let s = t.sine.at(phase + (index + 0.25 * scale) * t.sine.at(phase) / TAU);
                phase = wrap(phase + inc);
                index *= fade;
                s
            });
        }
        Timbre::Cool => {
            let env = LEAD_COOL.shape(gate);
            let mut index = 0.9 * vel * scale;
            let fade = (-1.0 / (0.15 * SR)).exp();
            let (mut lfo, mut i) = (0f32, 0usize);
            let depth_from = (0.25 * SR) as usize;
            play(buses, start, &env, LEAD_LEVEL * vel, LEAD_SEND, || {
                let s = t.sine.at(phase + index * t.sine.at(3.0 * phase) / TAU) + 0.22 * t.sine.at(2.0 * phase);
                let depth = 0.004 * ((i.saturating_sub(depth_from)) as f32 / (0.35 * SR)).min(1.0);
                phase = wrap(phase + inc * (1.0 + depth * t.sine.at(lfo)));
                lfo = wrap(lfo + 5.2 / SR);
                index *= fade;
                i += 1;
                s * 0.85
            });
        }
    }
}

fn bass(buses: &mut Buses, t: &Tables, start: usize, gate: f32, n: &Note) {
    let inc = frequency(n.midi) / SR;
    let env = BASS.shape(gate);
    let mut phase = 0f32;
    play(buses, start, &env, BASS_LEVEL * n.velocity, 0.0, || {
        let s = t.bass.at(phase);
        phase = wrap(phase + inc);
        s
    });
}

/// The pad: two slightly detuned oscillators (a chorus), sawtooths through a low-pass
/// for warm photos, a soft organ tone for cool ones.
fn pad(buses: &mut Buses, t: &Tables, score: &Score, start: usize, gate: f32, n: &Note) {
    let f = frequency(n.midi);
    let (inc_a, inc_b) = (f * 2f32.powf(-6.0 / 1200.0) / SR, f * 2f32.powf(6.0 / 1200.0) / SR);
    // Start the second oscillator half a cycle apart so the pair never begins in phase.
    let (mut a, mut b) = (0f32, 0.5f32);
    match score.timbre {
        Timbre::Warm => {
            let env = PAD_WARM.shape(gate);
            let cutoff = 1000.0 + 900.0 * (1.0 - score.warmth);
            let k = 1.0 - (-TAU * cutoff / SR).exp();
            let mut low = 0f32;
            play(buses, start, &env, PAD_LEVEL * n.velocity, PAD_SEND, || {
                let s = 0.5 * (t.saw.at(a) + t.saw.at(b));
                (a, b) = (wrap(a + inc_a), wrap(b + inc_b));
                low += k * (s - low);
                low * 1.6
            });
        }
        Timbre::Cool => {
            let env = PAD_COOL.shape(gate);
            play(buses, start, &env, PAD_LEVEL * n.velocity, PAD_SEND, || {
                let s = 0.5 * (t.organ.at(a) + t.organ.at(b));
                (a, b) = (wrap(a + inc_a), wrap(b + inc_b));
                s
            });
        }
    }
}

/// The gain of sample `i` of a drum `len` samples long: a short raised-cosine fade-in
/// from 0 and a linear fade-out to 0 over the last 10 ms.
pub(super) fn drum_gain(i: usize, len: usize, attack: usize) -> f32 {
    let rise = if i < attack { 0.5 - 0.5 * (PI * i as f32 / attack as f32).cos() } else { 1.0 };
    let tail = (0.010 * SR) as usize;
    let fall = if i + tail >= len { (len.saturating_sub(i + 1)) as f32 / tail as f32 } else { 1.0 };
    rise * fall.clamp(0.0, 1.0)
}

/// Kick: a sine swept down from ~140 Hz to 48 Hz; snare: a 185 Hz body and high-passed
/// noise; hats: twice high-passed noise, short or (open) longer.
fn drum(buses: &mut Buses, start: usize, hit: &Hit, seed: u64) {
    let mut rng = Rng::new(seed);
    let seconds = match hit.drum {
        Drum::Kick => 0.4,
        Drum::Snare => 0.28,
        Drum::Hat => 0.08,
        Drum::OpenHat => 0.45,
    };
    let len = (seconds * SR) as usize;
    let end = (start + len).min(buses.dry.len());
    if start >= end {
        return;
    }
    let attack = (0.0015 * SR) as usize;
    let v = hit.velocity;
    let (mut phase, mut prev, mut prev_diff) = (0f32, 0f32, 0f32);
    for (i, out) in buses.dry[start..end].iter_mut().enumerate() {
        let t = i as f32 / SR;
        let gain = drum_gain(i, len, attack);
        let s = match hit.drum {
            Drum::Kick => {
                let f = 48.0 + 95.0 * (-t / 0.03).exp();
                phase = wrap(phase + f / SR);
                KICK_LEVEL * (TAU * phase).sin() * (-t / 0.15).exp()
            }
            Drum::Snare => {
                let noise = rng.signed();
                let high = noise - prev;
                prev = noise;
                phase = wrap(phase + 185.0 / SR);
                SNARE_LEVEL * (0.5 * (TAU * phase).sin() * (-t / 0.05).exp() + 0.55 * high * (-t / 0.09).exp())
            }
            Drum::Hat | Drum::OpenHat => {
                let noise = rng.signed();
                let diff = noise - prev;
                let high = diff - prev_diff;
                (prev, prev_diff) = (noise, diff);
                let decay = if hit.drum == Drum::Hat { 0.02 } else { 0.11 };
                HAT_LEVEL * 0.7 * high * (-t / decay).exp()
            }
        };
        *out += v * gain * s;
    }
}

/// A dotted-eighth echo: the send bus delayed, darkened by a one-pole low-pass and fed
/// back, added to the mix.
fn echo(send: &[f32], mix: &mut [f32], delay: usize) {
    if delay == 0 {
        return;
    }
    let k = 1.0 - (-TAU * 2500.0 / SR).exp();
    let mut line = vec![0f32; send.len()];
    let mut low = 0f32;
    for i in 0..send.len() {
        let back = if i >= delay { line[i - delay] } else { 0.0 };
        low += k * (back - low);
        line[i] = send[i] + ECHO_FEEDBACK * low;
        mix[i] += ECHO_RETURN * low;
    }
}

/// Fades the very start and the end (the echoes' last whisper), scales the loudest
/// sample to -1.1 dBFS and converts to 16 bits.
pub(super) fn master(mut mix: Vec<f32>) -> Vec<i16> {
    let n = mix.len();
    let fade_in = ((0.003 * SR) as usize).min(n);
    let fade_out = ((0.4 * SR) as usize).min(n);
    for (i, v) in mix.iter_mut().take(fade_in).enumerate() {
        *v *= i as f32 / fade_in as f32;
    }
    for (j, v) in mix.iter_mut().rev().take(fade_out).enumerate() {
        *v *= 0.5 - 0.5 * (PI * j as f32 / fade_out as f32).cos();
    }
    let peak = mix.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gain = if peak > 1e-9 { PEAK / peak } else { 0.0 };
    mix.iter().map(|v| (v * gain * 32767.0).round().clamp(-32767.0, 32767.0) as i16).collect()
}
