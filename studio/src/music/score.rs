//! The score: harmony, a singable melody, bass, pad and drums, as notes on a beat grid.
//!
//! Form: four four-bar phrases, A A' B A''. A ends on the dominant (a half cadence), A'
//! repeats A's first two bars and closes on the tonic, B moves to other chords a step
//! higher and ends on the dominant again, A'' brings the opening back and ends on the
//! tonic, held. The repetition is what makes it a tune rather than a walk over the photo.

use std::ops::Range;

use super::accompaniment;
use super::analysis::{BANDS, COLUMNS, Features, PHRASE_BARS};
use super::notation::{BARS, BEATS_PER_BAR, Mode, Note, Rng, Score, Timbre};

/// Slowest and fastest tempo: 16 bars and the tail last between 29 and 59 seconds.
const TEMPO_RANGE: (f32, f32) = (68.0, 144.0);
/// Mean luminance from which a photo is in a major key.
const MAJOR_FROM: f32 = 0.45;
/// The melody's lowest and highest scale degree (0 is the tonic near middle C).
const MELODY_RANGE: (i32, i32) = (-1, 10);

/// How a phrase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// On the dominant (scale degree 5), asking for more.
    Half,
    /// On the tonic or its third.
    Full,
    /// On the tonic, held into the tail.
    Final,
}

/// Melody rhythms of one bar, in eighth notes; a negative length is a rest.
const RHYTHMS: [&[&[i8]]; 3] = [
    &[&[4, 4], &[6, 2], &[2, 2, 4], &[4, 2, 2], &[3, 1, 4], &[4, 3, -1]],
    &[&[2, 2, 2, 2], &[3, 1, 2, 2], &[2, 2, 4], &[2, 1, 1, 4], &[4, 2, 2], &[3, 1, 3, 1], &[2, 2, 3, -1]],
    &[&[1, 1, 2, 2, 2], &[2, 1, 1, 2, 2], &[1, 1, 1, 1, 2, 2], &[3, 1, 1, 1, 2], &[2, 2, 1, 1, 2], &[1, 1, 2, 1, 1, 2]],
];
/// The last bar of a phrase: the cadence note lands on beat 3 and is held.
const CADENCE_RHYTHMS: [&[i8]; 3] = [&[2, 2, 4], &[3, 1, 4], &[4, 4]];

/// One melody note while composing, on the bar/eighth grid.
#[derive(Clone, Copy, Debug)]
struct Tone {
    bar: u32,
    eighth: u32,
    eighths: u32,
    degree: i32,
    /// The last note of a phrase: shortened for a breath.
    breath: bool,
}

/// Where the melody is while it is being written.
#[derive(Clone, Copy, Debug)]
struct Voice {
    degree: i32,
    last_interval: i32,
    repeats: u32,
}

struct Composer<'a> {
    f: &'a Features,
    rng: Rng,
    chords: Vec<i32>,
    level: usize,
    leap_chance: f32,
}

pub(super) fn write(f: &Features) -> Score {
    let mut rng = Rng::new(f.seed);
    let mode = if f.brightness >= MAJOR_FROM { Mode::Major } else { Mode::Minor };
    // Neighbouring hues are neighbouring keys: red C, orange G, yellow D, ... round the
    // circle of fifths; a grey photo takes its key from its pixels' hash.
    let tonic = match f.hue {
        Some(hue) => ((hue / 30.0).round() as i32 % 12 * 7) % 12,
        None => (f.seed % 12) as i32,
    };
    let energy = (0.45 * f.saturation + 0.35 * f.contrast + 0.2 * f.texture).clamp(0.0, 1.0);
    let density = (0.6 * f.texture + 0.4 * f.contrast).clamp(0.0, 1.0);
    let dynamics = (0.6 * f.saturation + 0.4 * f.contrast).clamp(0.0, 1.0);
    let light = ((f.brightness - 0.1) / 0.7).clamp(0.0, 1.0);
    let tempo = (70.0 + 56.0 * light + 18.0 * energy).round().clamp(TEMPO_RANGE.0, TEMPO_RANGE.1) as u32;
    let mood = match (mode, energy) {
        (Mode::Major, e) if e >= 0.5 => "joyful",
        (Mode::Major, e) if e >= 0.28 => "bright",
        (Mode::Major, _) => "calm",
        (Mode::Minor, e) if e >= 0.5 => "dramatic",
        (Mode::Minor, e) if e >= 0.28 => "wistful",
        (Mode::Minor, _) => "dreamy",
    };
    let level = if density < 0.3 {
        0
    } else if density < 0.6 {
        1
    } else {
        2
    };
    let chords = harmony(mode, &mut rng);
    let mut composer = Composer { f, rng, chords: chords.clone(), level, leap_chance: 0.12 + 0.2 * f.texture };
    let (tones, phrase_ends) = composer.melody();
    let mut rng = composer.rng;

    let mut score = Score {
        tonic,
        mode,
        tempo,
        mood,
        timbre: if f.warmth >= 0.5 { Timbre::Warm } else { Timbre::Cool },
        warmth: f.warmth,
        seed: f.seed,
        level,
        chords,
        melody: Vec::new(),
        degrees: tones.iter().map(|t| t.degree).collect(),
        phrase_ends,
        bass: Vec::new(),
        pad: Vec::new(),
        drums: Vec::new(),
    };
    // The last notes ring on for a second into the tail.
    let ring = 1.0 / score.seconds_per_beat();
    let accent = 0.06 + 0.18 * dynamics;
    let section_level = |bar: u32| [0.8f32, 0.86, 0.96, 0.92][(bar / 4) as usize % 4];
    let last = tones.len().saturating_sub(1);
    for (i, t) in tones.iter().enumerate() {
        let length = f64::from(t.eighths) / 2.0;
        let gate = if i == last {
            length + ring
        } else if t.breath {
            length * 0.75
        } else {
            length * 0.92
        };
        let strong = if t.eighth.is_multiple_of(4) { 1.0 } else { 1.0 - accent };
        score.melody.push(Note {
            beat: f64::from(t.bar * BEATS_PER_BAR) + f64::from(t.eighth) / 2.0,
            gate,
            midi: score.melody_midi(t.degree),
            velocity: (section_level(t.bar) * strong * (1.0 + 0.05 * rng.signed())).clamp(0.1, 1.0),
        });
    }
    accompaniment::bass(&mut score, ring);
    accompaniment::pad(&mut score, ring);
    accompaniment::drums(&mut score, dynamics, &mut rng);
    score
}

/// The root of each bar's chord. Two opening bars are shared by A, A' and A'', so the
/// repeated melody sits on the same chords each time.
fn harmony(mode: Mode, rng: &mut Rng) -> Vec<i32> {
    type Pairs = &'static [[i32; 2]];
    let (openings, halves, fulls, bridges): (Pairs, Pairs, Pairs, &[[i32; 4]]) = match mode {
        // I vi | I IV ; ii V | IV V ; V I ; IV I ii V | vi IV I V | vi iii IV V
        Mode::Major => (
            &[[0, 5], [0, 3]],
            &[[3, 4], [1, 4]],
            &[[4, 0], [4, 0], [3, 0]],
            &[[3, 0, 1, 4], [5, 3, 0, 4], [5, 2, 3, 4]],
        ),
        // i VI | i iv | i VII ; iv v | VI v ; VII i | v i | iv i ; VI III VII v | iv i VI v | VI VII III v
        Mode::Minor => (
            &[[0, 5], [0, 3], [0, 6]],
            &[[3, 4], [5, 4]],
            &[[6, 0], [4, 0], [3, 0]],
            &[[5, 2, 6, 4], [3, 0, 5, 4], [5, 6, 2, 4]],
        ),
    };
    let open = *rng.pick(openings);
    // A cadence does not start on the chord the opening just ended on.
    let fresh = |pairs: &[[i32; 2]]| pairs.iter().copied().filter(|p| p[0] != open[1]).collect::<Vec<_>>();
    let half = *rng.pick(&fresh(halves));
    let full = *rng.pick(&fresh(fulls));
    let bridge = *rng.pick(bridges);
    let mut chords = Vec::with_capacity(BARS as usize);
    chords.extend(open.iter().chain(&half));
    chords.extend(open.iter().chain(&full));
    chords.extend(bridge);
    chords.extend(open.iter().chain(&full));
    chords
}

impl Composer<'_> {
    /// A A' B A'': A reads the top band of the photo, B the third, a step higher; A' and
    /// A'' repeat A's first two bars and read the second and bottom bands for their endings.
    fn melody(&mut self) -> (Vec<Tone>, Vec<usize>) {
        let start = Voice { degree: 2, last_interval: 0, repeats: 0 };
        let a = self.phrase(0, 0..4, 0, 0, Ending::Half, start, &[]);
        let opening: Vec<Tone> = a.iter().copied().filter(|t| t.bar < 2).collect();
        let shifted = |by: u32| opening.iter().map(|t| Tone { bar: t.bar + by, ..*t }).collect::<Vec<_>>();
        let after_opening = self.voice_after(&opening);
        let a2 = self.phrase(4, 2..4, 1, 0, Ending::Full, after_opening, &shifted(4));
        let b = self.phrase(8, 0..4, 2, 2, Ending::Half, self.voice_after(&a2), &[]);
        let a3 = self.phrase(12, 2..4, 3, 0, Ending::Final, after_opening, &shifted(12));
        let mut tones = Vec::new();
        let mut ends = Vec::new();
        for phrase in [a, a2, b, a3] {
            tones.extend(phrase);
            ends.push(tones.len() - 1);
        }
        (tones, ends)
    }

    fn voice_after(&self, tones: &[Tone]) -> Voice {
        match tones {
            [.., before, last] => Voice { degree: last.degree, last_interval: last.degree - before.degree, repeats: 0 },
            [last] => Voice { degree: last.degree, last_interval: 0, repeats: 0 },
            [] => Voice { degree: 2, last_interval: 0, repeats: 0 },
        }
    }

    /// The phrase starting at `first_bar`: `given` (already written bars), then `bars`
    /// (bar numbers within the phrase) written from the photo's band `band`.
    #[allow(clippy::too_many_arguments)]
    fn phrase(
        &mut self,
        first_bar: u32,
        bars: Range<u32>,
        band: usize,
        lift: i32,
        ending: Ending,
        mut voice: Voice,
        given: &[Tone],
    ) -> Vec<Tone> {
        let band = band.min(BANDS - 1);
        let mut tones = given.to_vec();
        let written_from = tones.len();
        for bar_in in bars.clone() {
            let bar = first_bar + bar_in;
            let chord = self.chords[bar as usize];
            let rhythm: &[i8] = if bar_in + 1 == PHRASE_BARS as u32 {
                self.rng.pick::<&[i8]>(&CADENCE_RHYTHMS)
            } else {
                // The busier this part of the photo, the busier the bar (within the level).
                let pool = RHYTHMS[self.level];
                let busy = self.f.busyness[band][bar_in as usize];
                pool[((busy * pool.len() as f32) as usize + self.rng.below(2)) % pool.len()]
            };
            let mut eighth = 0u32;
            for &len in rhythm {
                if len < 0 {
                    eighth += u32::from(len.unsigned_abs());
                    if let Some(t) = tones.last_mut() {
                        t.breath = true;
                    }
                    continue;
                }
                let at = (bar_in * 8 + eighth) as usize;
                let col = (at * COLUMNS) / (PHRASE_BARS * 8);
                // Light parts of the photo are high notes, dark parts low ones, over an
                // arch: a phrase rises towards its middle and comes down to its cadence.
                let arch = 2.5 * (std::f32::consts::PI * at as f32 / (PHRASE_BARS * 8) as f32).sin();
                let target = (self.f.contour[band][col] * 5.0 + arch).round() as i32 + lift;
                let strong = eighth.is_multiple_of(4);
                let mut degree = self.step(voice, target);
                if strong {
                    degree = nearest_chord_tone(degree, chord, voice.degree);
                }
                if degree == voice.degree && voice.repeats >= 1 {
                    // Heard twice already: move on, towards the target (or the middle).
                    let dir = match target.cmp(&voice.degree) {
                        std::cmp::Ordering::Greater => 1,
                        std::cmp::Ordering::Less => -1,
                        std::cmp::Ordering::Equal if voice.degree >= 4 => -1,
                        std::cmp::Ordering::Equal => 1,
                    };
                    degree = voice.degree + dir;
                    while strong && !is_chord_tone(degree, chord) {
                        degree += dir;
                    }
                }
                degree = degree.clamp(MELODY_RANGE.0, MELODY_RANGE.1);
                let interval = degree - voice.degree;
                voice = Voice {
                    degree,
                    last_interval: interval,
                    repeats: if interval == 0 { voice.repeats + 1 } else { 0 },
                };
                tones.push(Tone { bar, eighth, eighths: u32::from(len.unsigned_abs()), degree, breath: false });
                eighth += u32::from(len.unsigned_abs());
            }
        }
        end_phrase(&mut tones[written_from..], ending, given.last().map(|t| t.degree));
        tones
    }

    /// The next degree: towards the photo's target, mostly by step, sometimes by a leap
    /// of up to a fifth that is then filled in by a step back, never more than one repeat.
    fn step(&mut self, voice: Voice, target: i32) -> i32 {
        let prev = voice.degree;
        if voice.last_interval.abs() >= 3 {
            return prev - voice.last_interval.signum();
        }
        let diff = target - prev;
        if diff == 0 {
            return if voice.repeats == 0 && self.rng.chance(0.6) {
                prev
            } else if prev >= 4 {
                prev - 1
            } else {
                prev + 1
            };
        }
        if diff.abs() >= 3 && self.rng.chance(self.leap_chance) {
            prev + diff.signum() * diff.abs().min(4)
        } else if diff.abs() >= 2 && self.rng.chance(0.3) {
            prev + diff.signum() * 2
        } else {
            prev + diff.signum()
        }
    }
}

fn is_chord_tone(degree: i32, chord: i32) -> bool {
    matches!((degree - chord).rem_euclid(7), 0 | 2 | 4)
}

/// `degree` if it belongs to the chord, else the neighbour that does (every degree is a
/// step from a triad tone), preferring the one nearer the previous note.
fn nearest_chord_tone(degree: i32, chord: i32, prev: i32) -> i32 {
    if is_chord_tone(degree, chord) {
        return degree;
    }
    let mut options = [degree - 1, degree + 1];
    options.sort_by_key(|d| (d - prev).abs());
    options.into_iter().find(|&d| is_chord_tone(d, chord)).unwrap_or(degree)
}

/// Lands the phrase's last note on its cadence degree (the closest octave of it) and,
/// if that is more than a third away, approaches it by step over the notes before.
fn end_phrase(tones: &mut [Tone], ending: Ending, before: Option<i32>) {
    let Some(last_index) = tones.len().checked_sub(1) else { return };
    let goals: &[i32] = match ending {
        Ending::Half => &[4],
        Ending::Full => &[0, 2],
        Ending::Final => &[0],
    };
    let prev = if last_index > 0 { tones[last_index - 1].degree } else { before.unwrap_or(2) };
    let goal = goals
        .iter()
        .flat_map(|g| [g - 7, *g, g + 7])
        .filter(|d| (MELODY_RANGE.0..=MELODY_RANGE.1).contains(d))
        .min_by_key(|d| ((d - prev).abs(), d.abs()))
        .unwrap_or(0);
    tones[last_index].degree = goal;
    tones[last_index].breath = true;
    // Walk back over up to three notes, turning a jump into the goal into steps.
    for i in (last_index.saturating_sub(3)..last_index).rev() {
        let next = tones[i + 1].degree;
        let gap = tones[i].degree - next;
        if gap.abs() <= 2 {
            break;
        }
        tones[i].degree = next + gap.signum() * if i + 1 == last_index { 1 } else { 2 };
    }
}
