use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use image::{Rgb, RgbImage};

use super::analysis::analyse;
use super::notation::{self, Score};
use super::score;
use super::synth::{self, Envelope, SAMPLE_RATE, Stems};
use super::*;

/// A sunny orange-yellow photo with a bright blob (a golden dog in the sun).
fn bright_warm() -> RgbImage {
    RgbImage::from_fn(384, 288, |x, y| {
        let d = ((x as f32 - 190.0).powi(2) + (y as f32 - 150.0).powi(2)).sqrt();
        if d < 90.0 { Rgb([255, 225, (90.0 + d) as u8]) } else { Rgb([250, (150 + y / 4) as u8, (40 + x / 16) as u8]) }
    })
}

/// A dim, flat, blue photo (a black cat at dusk).
fn dark_cool() -> RgbImage {
    RgbImage::from_fn(384, 288, |x, y| {
        let d = ((x as f32 - 200.0).powi(2) + (y as f32 - 140.0).powi(2)).sqrt();
        let lift = if d < 70.0 { 8 } else { 0 };
        Rgb([(12 + x / 64 + lift) as u8, (22 + y / 48 + lift) as u8, (58 + x / 32 + lift) as u8])
    })
}

/// Busy fur-like texture in greens and browns at middle brightness.
fn textured() -> RgbImage {
    RgbImage::from_fn(320, 320, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let v = 0.5 + 0.35 * (fx * 0.9).sin() * (fy * 0.7).cos() + 0.15 * ((fx + fy) * 0.05).sin();
        let g = (v * 255.0).clamp(0.0, 255.0);
        Rgb([(g * 0.8) as u8, g as u8, (g * 0.45) as u8])
    })
}

fn photos() -> [(&'static str, RgbImage); 3] {
    [("bright warm", bright_warm()), ("dark cool", dark_cool()), ("textured", textured())]
}

fn compose_ok(photo: &RgbImage) -> Composition {
    compose(photo, &RenderContext::detached()).expect("composes")
}

fn score_of(photo: &RgbImage) -> Score {
    score::write(&analyse(photo))
}

fn stems(photo: &RgbImage, stems: Stems) -> Vec<f32> {
    synth::render(&score_of(photo), stems, &RenderContext::detached()).expect("renders")
}

/// The fields of a WAV file the tests look at.
struct Wav {
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    samples: Vec<i16>,
}

/// A RIFF/WAVE reader: walks the chunks, checks the sizes, reads `fmt ` and `data`.
fn parse_wav(bytes: &[u8]) -> Wav {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(u32_at(4) as usize, bytes.len() - 8, "RIFF size");
    assert_eq!(&bytes[8..12], b"WAVE");
    let (mut fmt, mut data) = (None, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32_at(at + 4) as usize;
        let body = at + 8;
        assert!(body + size <= bytes.len(), "chunk {:?} overruns the file", &bytes[at..at + 4]);
        match &bytes[at..at + 4] {
            b"fmt " => {
                fmt = Some((
                    u16_at(body),
                    u16_at(body + 2),
                    u32_at(body + 4),
                    u32_at(body + 8),
                    u16_at(body + 12),
                    u16_at(body + 14),
                ))
            }
            b"data" => data = Some(&bytes[body..body + size]),
            _ => {}
        }
        at = body + size + size % 2;
    }
    let (format, channels, rate, byte_rate, block_align, bits) = fmt.expect("a fmt chunk");
    assert_eq!(byte_rate, rate * u32::from(block_align));
    assert_eq!(block_align, channels * bits / 8);
    let data = data.expect("a data chunk");
    assert_eq!(data.len() % usize::from(block_align), 0);
    let samples = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    Wav { format, channels, rate, bits, samples }
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// 16-bit samples at -1 dBFS: the ceiling no sample may pass.
const CEILING: f32 = 32_768.0 * 0.891_250_9;

fn seconds(samples: usize) -> f32 {
    samples as f32 / SAMPLE_RATE as f32
}

/// The power of `x` at `freq` (Goertzel over a Hann window).
fn goertzel(x: &[f32], freq: f32) -> f32 {
    let w = std::f32::consts::TAU * freq / SAMPLE_RATE as f32;
    let coeff = 2.0 * w.cos();
    let n = x.len().max(2) as f32;
    let (mut s1, mut s2) = (0f32, 0f32);
    for (i, v) in x.iter().enumerate() {
        let hann = 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / (n - 1.0)).cos();
        let s = v * hann + coeff * s1 - s2;
        (s2, s1) = (s1, s);
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The energy of `x` below about 150 Hz (two one-pole low-passes) over its whole energy.
fn low_share(x: &[f32]) -> f32 {
    let k = 1.0 - (-std::f32::consts::TAU * 150.0 / SAMPLE_RATE as f32).exp();
    let (mut a, mut b, mut low, mut all) = (0f32, 0f32, 0f64, 0f64);
    for v in x {
        a += k * (v - a);
        b += k * (a - b);
        low += f64::from(b * b);
        all += f64::from(v * v);
    }
    (low / all.max(1e-12)) as f32
}

/// The largest sixth difference, over the peak: near zero for band-limited tones
/// (a sixth difference passes 7 kHz at 0.76 and 2 kHz at 0.0005), 20 times a step.
fn click_score(x: &[f32]) -> f32 {
    let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d6 = x
        .windows(7)
        .map(|w| (w[6] - 6.0 * w[5] + 15.0 * w[4] - 20.0 * w[3] + 15.0 * w[2] - 6.0 * w[1] + w[0]).abs())
        .fold(0f32, f32::max);
    d6 / peak.max(1e-9)
}

const HOP: usize = 256;
const FRAME: usize = 512;

/// Onset strength every 256 samples: how much the energy of the signal's first
/// difference (its attacks: drum hits and note onsets, not the slow swell of the bass)
/// over 512 samples rose since the frame before. Frame `k` ends at sample `k·256 + 512`.
fn onsets(x: &[f32]) -> Vec<f32> {
    let attacks: Vec<f32> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let energy: Vec<f32> = (0..attacks.len().saturating_sub(FRAME) / HOP)
        .map(|k| attacks[k * HOP..k * HOP + FRAME].iter().map(|v| v * v).sum())
        .collect();
    std::iter::once(0.0).chain(energy.windows(2).map(|w| (w[1] - w[0]).max(0.0))).collect()
}

fn autocorrelation(x: &[f32], lag: usize) -> f32 {
    x.iter().zip(&x[lag.min(x.len())..]).map(|(a, b)| a * b).sum()
}

#[test]
fn each_photo_makes_a_16_bit_44_1_khz_wav_of_the_stated_length() {
    for (name, photo) in photos() {
        let piece = compose_ok(&photo);
        let wav = parse_wav(&piece.wav);
        assert_eq!((wav.format, wav.channels, wav.rate, wav.bits), (1, 1, 44_100, 16), "{name}");
        let length = seconds(wav.samples.len());
        assert!((20.0..=60.0).contains(&length), "{name}: {length} s");
        assert!((length - piece.duration_seconds).abs() < 1e-3, "{name}: {length} s, said {}", piece.duration_seconds);
        let (tonic, mode) = piece.key.split_once(' ').expect("a key like \"A minor\"");
        assert!(["major", "minor"].contains(&mode), "{}", piece.key);
        assert!(tonic.len() <= 2 && ('A'..='G').contains(&tonic.chars().next().unwrap_or('?')), "{}", piece.key);
        assert!((68..=144).contains(&piece.tempo_bpm), "{name}: {} bpm", piece.tempo_bpm);
        assert!(!piece.mood.is_empty());
    }
}

#[test]
fn every_five_seconds_are_audible_and_nothing_clips() {
    for (name, photo) in photos() {
        let samples = parse_wav(&compose_ok(&photo).wav).samples;
        let peak = samples.iter().map(|s| f32::from(*s).abs()).fold(0.0, f32::max);
        assert!(peak <= CEILING, "{name}: peak {peak} above -1 dBFS");
        assert!(peak >= 0.85 * CEILING, "{name}: normalised to its ceiling, not quieter ({peak})");
        assert!(
            !samples.iter().any(|&s| s == i16::MAX || s == i16::MIN || s == -i16::MAX),
            "{name}: a full-scale sample"
        );
        let x = to_f32(&samples);
        assert!(rms(&x) > 0.08, "{name}: RMS {} over the piece", rms(&x));
        let window = 5 * SAMPLE_RATE as usize;
        for (i, w) in x.chunks_exact(window).enumerate() {
            assert!(rms(w) > 0.05, "{name}: RMS {} in seconds {}-{}", rms(w), i * 5, i * 5 + 5);
        }
        // It starts and ends in silence (no click at either end).
        assert_eq!((samples[0], samples[samples.len() - 1]), (0, 0), "{name}");
    }
}

#[test]
fn the_same_photo_gives_the_same_bytes_and_others_another_piece() {
    let bright = compose_ok(&bright_warm());
    let again = compose_ok(&bright_warm());
    assert!(bright.wav == again.wav, "the same photo gave different bytes");
    assert_eq!((&bright.key, bright.tempo_bpm, bright.mood), (&again.key, again.tempo_bpm, again.mood));

    let dark = compose_ok(&dark_cool());
    let busy = compose_ok(&textured());
    for (a, b) in [(&bright, &dark), (&bright, &busy), (&dark, &busy)] {
        assert!(a.key != b.key || a.tempo_bpm != b.tempo_bpm, "{} {} vs {} {}", a.key, a.tempo_bpm, b.key, b.tempo_bpm);
        assert!(a.wav != b.wav);
    }
    // Bright is major and quick, dark is minor and slow.
    assert!(bright.key.ends_with(" major"), "{}", bright.key);
    assert!(dark.key.ends_with(" minor"), "{}", dark.key);
    assert!(bright.tempo_bpm >= dark.tempo_bpm + 30, "{} vs {} bpm", bright.tempo_bpm, dark.tempo_bpm);
    assert!(bright.duration_seconds < dark.duration_seconds);
    // Warm and cool photos are played by different instruments; flat and busy ones move differently.
    assert_eq!(score_of(&bright_warm()).timbre, notation::Timbre::Warm);
    assert_eq!(score_of(&dark_cool()).timbre, notation::Timbre::Cool);
    assert!(score_of(&textured()).melody.len() > score_of(&dark_cool()).melody.len());
    assert_ne!(bright.mood, dark.mood);
}

#[test]
fn melody_bass_and_pad_agree_on_each_bars_chord() {
    for (name, photo) in photos() {
        let score = score_of(&photo);
        let scale: [i32; 7] =
            if score.mode == notation::Mode::Major { [0, 2, 4, 5, 7, 9, 11] } else { [0, 2, 3, 5, 7, 8, 10] };
        let pitch = |degree: i32| (score.tonic + scale[degree.rem_euclid(7) as usize]).rem_euclid(12);
        let in_key = |midi: i32| (0..7).any(|d| pitch(d) == midi.rem_euclid(12));
        for (bar, &chord) in score.chords.iter().enumerate() {
            let triad = [pitch(chord), pitch(chord + 2), pitch(chord + 4)];
            let beats = (bar * 4) as f64..(bar * 4 + 4) as f64;
            let root = score.bass.iter().find(|n| n.beat == beats.start).expect("a downbeat bass note");
            assert_eq!(root.midi.rem_euclid(12), triad[0], "{name}: bar {bar}: bass {} under chord {chord}", root.midi);
            for n in score.bass.iter().chain(&score.pad).filter(|n| beats.contains(&n.beat)) {
                assert!(triad.contains(&n.midi.rem_euclid(12)), "{name}: bar {bar}: {} not in {triad:?}", n.midi);
            }
        }
        assert!(score.melody.iter().all(|n| in_key(n.midi)), "{name}: a melody note outside the key");
        assert_eq!(score.pad.iter().filter(|n| n.beat == 0.0).count(), 3, "{name}: the pad plays triads");
    }
}

#[test]
fn the_bass_plays_each_bars_root_below_150_hz() {
    for (name, photo) in photos() {
        let bass = stems(&photo, Stems { melody: false, pad: false, drums: false, ..Stems::ALL });
        let melody = stems(&photo, Stems { bass: false, pad: false, drums: false, ..Stems::ALL });
        eprintln!("{name}: low share of the bass {:.2}, of the melody {:.4}", low_share(&bass), low_share(&melody));
        // A pure 98 Hz tone scores 0.49 here (the filter is gentle), one at 196 Hz 0.14:
        // the melody, from G3 up, scores little.
        assert!(low_share(&bass) > 0.3, "{name}: bass low share {}", low_share(&bass));
        assert!(low_share(&bass) > 8.0 * low_share(&melody), "{name}: melody low share {}", low_share(&melody));

        // In the finished mix, each bar is loud at its bass root's frequency, and bars whose
        // chord lacks that note are quiet there (the kick is the same in every bar).
        let score = score_of(&photo);
        let scale: [i32; 7] =
            if score.mode == notation::Mode::Major { [0, 2, 4, 5, 7, 9, 11] } else { [0, 2, 3, 5, 7, 8, 10] };
        let triad = |chord: i32| [0, 2, 4].map(|d| (score.tonic + scale[(chord + d).rem_euclid(7) as usize]) % 12);
        let x = to_f32(&parse_wav(&compose_ok(&photo).wav).samples);
        let bar = 4.0 * score.seconds_per_beat() * f64::from(SAMPLE_RATE);
        let window = |b: usize| &x[(b as f64 * bar) as usize..((b + 1) as f64 * bar) as usize];
        // The last bar rings on; it is left out.
        let bars = notation::BARS as usize - 1;
        let mut ratios = Vec::new();
        for b in 0..bars {
            let root = score.bass.iter().find(|n| n.beat == (b * 4) as f64).expect("a root on each downbeat").midi;
            let freq = 440.0 * 2f32.powf((root - 69) as f32 / 12.0);
            let elsewhere = (0..bars)
                .filter(|&c| !triad(score.chords[c]).contains(&root.rem_euclid(12)))
                .map(|c| goertzel(window(c), freq))
                .fold(0f32, f32::max);
            ratios.push(goertzel(window(b), freq) / elsewhere.max(1e-12));
        }
        eprintln!(
            "{name}: power at the root, over the most in a bar without it: {:?}",
            ratios.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        assert!(ratios.iter().all(|&r| r > 4.0), "{name}: {ratios:?}");
    }
}

#[test]
fn the_percussion_hits_on_the_beat() {
    for (name, photo) in photos() {
        let piece = compose_ok(&photo);
        let x = to_f32(&parse_wav(&piece.wav).samples);
        let strength = onsets(&x);
        let beat = 60.0 / piece.tempo_bpm as f32 * SAMPLE_RATE as f32 / HOP as f32;
        let eighth = beat / 2.0;

        // The onsets (the strongest within 17 ms either side, above 3 % of the strongest
        // of all) sit on the eighth-note grid.
        let top = strength.iter().fold(0f32, |m, v| m.max(*v));
        let peaks: Vec<usize> = (3..strength.len() - 3)
            .filter(|&k| strength[k] > 0.03 * top && (k - 3..=k + 3).all(|j| j == k || strength[j] < strength[k]))
            .collect();
        let offsets: Vec<f32> = peaks
            .iter()
            .map(|&k| {
                // The frame that first holds a whole hop of the attack.
                let pos = (k + FRAME / HOP - 1) as f32 / eighth;
                (pos - pos.round()) * eighth
            })
            .collect();
        let on_grid = offsets.iter().filter(|o| o.abs() <= 1.5).count();
        eprintln!("{name}: {} onsets, {on_grid} within 9 ms of an eighth note", peaks.len());
        assert!(peaks.len() >= 2 * notation::BARS as usize, "{name}: only {} onsets", peaks.len());
        assert!(
            on_grid as f32 >= 0.95 * peaks.len() as f32,
            "{name}: {on_grid} of {} onsets on the grid: {offsets:?}",
            peaks.len()
        );

        // And the onset pattern repeats every beat: its autocorrelation at one beat beats
        // every lag between a quarter of a beat either side of it.
        let at_beat = autocorrelation(&strength, beat.round() as usize);
        let near = ((0.6 * beat) as usize..=(0.9 * beat) as usize).chain((1.1 * beat) as usize..=(1.4 * beat) as usize);
        let best_near = near.map(|lag| autocorrelation(&strength, lag)).fold(0f32, f32::max);
        eprintln!("{name}: autocorrelation at the beat {at_beat:.1}, best nearby {best_near:.1}");
        assert!(at_beat > 1.5 * best_near, "{name}: {at_beat} vs {best_near}");
    }
}

#[test]
fn envelopes_start_and_end_at_zero_and_move_smoothly() {
    let mut shapes = vec![synth::LEAD_WARM, synth::LEAD_COOL, synth::PAD_WARM, synth::PAD_COOL, synth::BASS];
    shapes.push(Envelope { attack: 0.0, decay: 0.0, sustain: 1.0, release: 0.0 });
    for env in shapes {
        let per_sample = |secs: f32| (secs * SAMPLE_RATE as f32).round().max(1.0);
        let bound = (std::f32::consts::FRAC_PI_2 / per_sample(env.attack))
            .max(2.0 / per_sample(env.release))
            .max((1.0 - env.sustain) / per_sample(env.decay.max(1e-3)))
            * 1.01;
        for gate in [0.0, 0.0005, 0.003, 0.05, 0.3, 1.0, 4.0] {
            let s = env.shape(gate);
            assert_eq!(s[0], 0.0, "{env:?} gate {gate}");
            assert_eq!(*s.last().expect("samples"), 0.0, "{env:?} gate {gate}");
            assert!(s.iter().all(|v| (0.0..=1.0).contains(v)), "{env:?} gate {gate}");
            let jump = s.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max);
            assert!(jump <= bound, "{env:?} gate {gate}: a jump of {jump} > {bound}");
            assert!(s.len() >= per_sample(gate + env.release) as usize, "{env:?} gate {gate}: the release is cut");
        }
    }
    for len in [100, 3_000, 20_000] {
        assert_eq!(synth::drum_gain(0, len, 66), 0.0);
        assert_eq!(synth::drum_gain(len - 1, len, 66), 0.0);
        let jump = (1..len).map(|i| (synth::drum_gain(i, len, 66) - synth::drum_gain(i - 1, len, 66)).abs());
        assert!(jump.fold(0.0, f32::max) < 0.03);
    }
}

#[test]
fn the_tonal_parts_never_click() {
    for (name, photo) in photos() {
        let tonal = stems(&photo, Stems { drums: false, ..Stems::ALL });
        let score = click_score(&tonal);
        // The check would see a click: a step of half a percent of the peak scores ten times the bound.
        let mut stepped = tonal.clone();
        let peak = tonal.iter().fold(0f32, |m, v| m.max(v.abs()));
        stepped[200_000..].iter_mut().for_each(|v| *v += 0.005 * peak);
        eprintln!("{name}: click score {score:.5}, with a 0.5% step {:.5}", click_score(&stepped));
        assert!(click_score(&stepped) > 0.04);
        assert!(score < 0.02, "{name}: click score {score}");
    }
}

#[test]
fn the_melody_is_singable() {
    for (name, photo) in photos() {
        let score = score_of(&photo);
        let d = &score.degrees;
        // Intervals within phrases (a new phrase may start anywhere after its breath).
        let intervals: Vec<i32> =
            (1..d.len()).filter(|i| !score.phrase_ends.contains(&(i - 1))).map(|i| d[i] - d[i - 1]).collect();
        let share = |max: i32| intervals.iter().filter(|i| i.abs() <= max).count() as f32 / intervals.len() as f32;
        let leaps: Vec<usize> = (0..intervals.len()).filter(|&i| intervals[i].abs() >= 3).collect();
        let filled = leaps.iter().filter(|&&i| intervals.get(i + 1).is_none_or(|n| n.abs() <= 2)).count();
        let strong: Vec<bool> = score
            .melody
            .iter()
            .zip(d)
            .filter(|(n, _)| n.beat.fract() == 0.0 && (n.beat as u32).is_multiple_of(2))
            .map(|(n, &deg)| {
                let chord = score.chords[(n.beat / 4.0) as usize];
                matches!((deg - chord).rem_euclid(7), 0 | 2 | 4)
            })
            .collect();
        let run = d.chunk_by(|a, b| a == b).map(<[i32]>::len).max().unwrap_or(0);
        eprintln!(
            "{name}: {} notes, steps {:.2}, within a third {:.2}, largest {}, leaps {} ({filled} filled), chord tones on strong beats {}/{}, longest repeat {run}",
            d.len(),
            share(1),
            share(2),
            intervals.iter().map(|i| i.abs()).max().unwrap_or(0),
            leaps.len(),
            strong.iter().filter(|s| **s).count(),
            strong.len()
        );
        assert!(share(1) >= 0.6, "{name}: mostly steps {intervals:?}");
        assert!(share(2) >= 0.85, "{name}: {intervals:?}");
        assert!(intervals.iter().all(|i| i.abs() <= 5), "{name}: no leap beyond a sixth {intervals:?}");
        assert!(filled as f32 >= 0.75 * leaps.len() as f32, "{name}: leaps are followed by steps {intervals:?}");
        assert!(run <= 3, "{name}: a note repeated {run} times");
        assert!(d.iter().max().unwrap_or(&0) - d.iter().min().unwrap_or(&0) <= 12, "{name}: range {d:?}");
        assert!(strong.iter().filter(|s| **s).count() as f32 >= 0.8 * strong.len() as f32, "{name}");
        // Phrases end on the tonic, third or fifth; the piece on the tonic.
        assert_eq!(score.phrase_ends.len(), 4);
        for &end in &score.phrase_ends {
            assert!(matches!(d[end].rem_euclid(7), 0 | 2 | 4), "{name}: phrase ends on degree {}", d[end]);
        }
        assert_eq!(d[d.len() - 1].rem_euclid(7), 0, "{name}: the last note is the tonic");
        assert_eq!(*score.phrase_ends.last().expect("ends"), d.len() - 1);
        // A' and A'' open with A's first two bars.
        let opening: Vec<(f64, i32)> = score.melody.iter().filter(|n| n.beat < 8.0).map(|n| (n.beat, n.midi)).collect();
        for from in [16.0, 48.0] {
            let again: Vec<(f64, i32)> = score
                .melody
                .iter()
                .filter(|n| (from..from + 8.0).contains(&n.beat))
                .map(|n| (n.beat - from, n.midi))
                .collect();
            assert_eq!(opening, again, "{name}: the opening comes back at beat {from}");
        }
    }
}

#[test]
fn tiny_grey_and_empty_photos_still_make_a_piece() {
    let grey = RgbImage::from_fn(200, 150, |x, y| {
        let v = (60 + (x + y) / 4) as u8;
        Rgb([v, v, v])
    });
    for (name, photo) in [
        ("one pixel", RgbImage::from_pixel(1, 1, Rgb([200, 30, 90]))),
        ("one column", RgbImage::from_fn(1, 300, |_, y| Rgb([(y % 256) as u8, 80, 40]))),
        ("grey", grey),
        ("empty", RgbImage::new(0, 0)),
    ] {
        let piece = compose_ok(&photo);
        let wav = parse_wav(&piece.wav);
        assert!((20.0..=60.0).contains(&seconds(wav.samples.len())), "{name}");
        assert!(rms(&to_f32(&wav.samples)) > 0.05, "{name}");
        let score = score_of(&photo);
        assert_eq!(score.degrees.last().expect("a melody").rem_euclid(7), 0, "{name}: ends on the tonic");
    }
}

/// The progress reports a context received.
type Reports = Arc<Mutex<Vec<(u8, &'static str)>>>;

fn recording_context(cancel_at: Option<&'static str>) -> (RenderContext, Reports) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cancel = Arc::new(AtomicBool::new(false));
    let (log, flag) = (seen.clone(), cancel.clone());
    let ctx = RenderContext::new(
        move |percent, stage| {
            log.lock().expect("log").push((percent, stage));
            if Some(stage) == cancel_at {
                flag.store(true, Ordering::Relaxed);
            }
        },
        cancel,
    );
    (ctx, seen)
}

#[test]
fn progress_runs_from_20_to_85_with_reports_while_rendering() {
    let (ctx, seen) = recording_context(None);
    let piece = compose(&bright_warm(), &ctx).expect("composes");
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.first(), Some(&(20, "analysing")));
    assert_eq!(seen.last(), Some(&(85, "encoding")));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(seen.iter().all(|(p, _)| (20..=85).contains(p)), "{seen:?}");
    let rendering = seen.iter().filter(|(_, s)| *s == "rendering audio").count();
    assert!(
        rendering as f32 >= piece.duration_seconds / 5.0,
        "{rendering} reports for {} s: {seen:?}",
        piece.duration_seconds
    );
}

#[test]
fn a_canceled_render_stops() {
    let canceled = RenderContext::new(|_, _| {}, Arc::new(AtomicBool::new(true)));
    assert!(matches!(compose(&bright_warm(), &canceled), Err(StudioError::Canceled)));

    // Canceled while rendering: it stops at the next report, before mixing.
    let (ctx, seen) = recording_context(Some("rendering audio"));
    assert!(matches!(compose(&bright_warm(), &ctx), Err(StudioError::Canceled)));
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.last().map(|s| s.1), Some("rendering audio"), "{seen:?}");
    assert_eq!(seen.iter().filter(|(_, s)| *s == "rendering audio").count(), 1);
}

#[test]
fn one_compose_takes_well_under_a_second_or_two() {
    let photo = bright_warm();
    let start = std::time::Instant::now();
    let piece = compose_ok(&photo);
    let took = start.elapsed();
    eprintln!("composed {:.1} s of audio in {took:?}", piece.duration_seconds);
    // Generous: only here to catch an accidental slowdown by an order of magnitude.
    assert!(took.as_secs_f32() < 10.0, "{took:?}");
}
