//! The accompaniment under the melody: the bass on the chord roots, a pad that moves as
//! little as possible between chords, and the drums, all written into the `Score`.

use super::notation::{BARS, BEATS_PER_BAR, Drum, Hit, Note, Rng, Score, degree_semitones};

/// Bass: the chord root on the downbeat, with the fifth and octave as the level allows.
pub(super) fn bass(score: &mut Score, ring: f64) {
    const ROOT: usize = 0;
    const FIFTH: usize = 1;
    const OCTAVE: usize = 2;
    let patterns: [&[(f64, f64, usize)]; 3] = [
        &[(0.0, 2.0, ROOT), (2.0, 2.0, FIFTH)],
        &[(0.0, 1.5, ROOT), (1.5, 0.5, ROOT), (2.0, 1.0, FIFTH), (3.0, 1.0, OCTAVE)],
        &[
            (0.0, 1.0, ROOT),
            (1.0, 0.5, ROOT),
            (1.5, 0.5, OCTAVE),
            (2.0, 1.0, ROOT),
            (3.0, 0.5, FIFTH),
            (3.5, 0.5, ROOT),
        ],
    ];
    for bar in 0..BARS {
        let chord = score.chords[bar as usize];
        // Roots from A1 (55 Hz) to G#2 (104 Hz): low, yet with harmonics small speakers play.
        let root = 24 + (score.tonic + degree_semitones(score.mode, chord)).rem_euclid(12);
        let root = if root < 33 { root + 12 } else { root };
        let fifth = root + degree_semitones(score.mode, chord + 4) - degree_semitones(score.mode, chord);
        let start = f64::from(bar * BEATS_PER_BAR);
        if bar + 1 == BARS {
            score.bass.push(Note { beat: start, gate: 4.0 + ring, midi: root, velocity: 0.9 });
            continue;
        }
        // The first phrase holds back.
        let level = if bar < 4 { score.level.min(1) } else { score.level };
        for &(at, len, tone) in patterns[level] {
            let midi = [root, fifth, root + 12][tone];
            let velocity = if at == 0.0 { 0.9 } else { 0.75 };
            score.bass.push(Note { beat: start + at, gate: len * 0.85, midi, velocity });
        }
    }
}

/// Pad: each bar's triad, voiced as close as possible to the one before (voice leading).
pub(super) fn pad(score: &mut Score, ring: f64) {
    let mut previous: Option<[i32; 3]> = None;
    for bar in 0..BARS {
        let chord = score.chords[bar as usize];
        let pcs = [0, 2, 4].map(|d| (score.tonic + degree_semitones(score.mode, chord + d)).rem_euclid(12));
        let mut best: Option<([i32; 3], i32)> = None;
        for inversion in 0..3 {
            for octave in [48, 60] {
                let mut notes = [0; 3];
                let mut floor = octave + pcs[inversion];
                for k in 0..3 {
                    let pc = pcs[(inversion + k) % 3];
                    let mut n = floor - floor.rem_euclid(12) + pc;
                    if n < floor {
                        n += 12;
                    }
                    notes[k] = n;
                    floor = n + 1;
                }
                if notes[0] < 50 || notes[2] > 71 {
                    continue;
                }
                let cost = match previous {
                    Some(p) => p.iter().zip(&notes).map(|(a, b)| (a - b).abs()).sum(),
                    None => (notes[0] - 55).abs(),
                };
                if best.is_none_or(|(_, c)| cost < c) {
                    best = Some((notes, cost));
                }
            }
        }
        let Some((notes, _)) = best else { continue };
        previous = Some(notes);
        let last = bar + 1 == BARS;
        for midi in notes {
            score.pad.push(Note {
                beat: f64::from(bar * BEATS_PER_BAR),
                gate: if last { 4.0 + ring } else { 4.0 },
                midi,
                velocity: [0.75f32, 0.8, 0.9, 0.85][(bar / 4) as usize],
            });
        }
    }
}

/// Drums: a kick and hi-hats from the start, the snare from the second phrase, a small
/// fill before B and before the return, one last hit on the final chord.
pub(super) fn drums(score: &mut Score, dynamics: f32, rng: &mut Rng) {
    let loud = 0.6 + 0.4 * dynamics;
    let (kicks, snares, hats): (&[f64], &[f64], &[f64]) = match score.level {
        0 => (&[0.0], &[2.0], &[0.0, 1.0, 2.0, 3.0]),
        1 => (&[0.0, 2.0], &[1.0, 3.0], &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),
        _ => (&[0.0, 1.5, 2.0], &[1.0, 3.0], &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),
    };
    let mut hit = |beat: f64, drum: Drum, velocity: f32, rng: &mut Rng| {
        let velocity = (velocity * loud * (1.0 + 0.08 * rng.signed())).clamp(0.05, 1.0);
        score.drums.push(Hit { beat, drum, velocity });
    };
    for bar in 0..BARS {
        let start = f64::from(bar * BEATS_PER_BAR);
        if bar + 1 == BARS {
            hit(start, Drum::Kick, 1.0, rng);
            hit(start, Drum::OpenHat, 0.8, rng);
            continue;
        }
        for &k in kicks {
            hit(start + k, Drum::Kick, if k == 0.0 { 1.0 } else { 0.8 }, rng);
        }
        if bar >= 4 {
            for &s in snares {
                hit(start + s, Drum::Snare, 0.85, rng);
            }
        }
        let fill = bar == 7 || bar == 11;
        if fill {
            hit(start + 3.5, Drum::Snare, 0.6, rng);
        }
        for &h in hats {
            let open = score.level == 2 && bar % 2 == 1 && h == 3.5 && !fill;
            let on_beat = h.fract() == 0.0;
            let drum = if open { Drum::OpenHat } else { Drum::Hat };
            hit(start + h, drum, if on_beat { 0.75 } else { 0.5 }, rng);
        }
    }
}
