//! The vocabulary of a piece: the beat grid, keys and scale degrees, notes, drum hits,
//! the `Score` they are written into, and the seeded random numbers the composer draws
//! from. The composer (`score.rs`), the accompaniment and the synthesiser all speak it.

pub(super) const BARS: u32 = 16;
pub(super) const BEATS_PER_BAR: u32 = 4;
/// Seconds after the last bar for the final chord and the echoes to die away.
pub(super) const TAIL_SECONDS: f64 = 2.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Major,
    Minor,
}

impl Mode {
    pub fn scale(self) -> [i32; 7] {
        match self {
            Mode::Major => [0, 2, 4, 5, 7, 9, 11],
            // Natural minor: its chords (i iv v VI VII) need no accidentals in the melody.
            Mode::Minor => [0, 2, 3, 5, 7, 8, 10],
        }
    }
}

/// The colour of the lead and the pad: warm photos get a mellow electric piano and a
/// filtered string pad, cool ones a glassy bell-flute and an organ-like pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timbre {
    Warm,
    Cool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Note {
    /// Start, in beats from the beginning.
    pub beat: f64,
    /// How long the key is held, in beats (the release comes after).
    pub gate: f64,
    pub midi: i32,
    /// 0 to 1.
    pub velocity: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drum {
    Kick,
    Snare,
    Hat,
    OpenHat,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Hit {
    pub beat: f64,
    pub drum: Drum,
    pub velocity: f32,
}

#[derive(Clone, Debug)]
pub(super) struct Score {
    /// Pitch class of the tonic, 0 = C.
    pub tonic: i32,
    pub mode: Mode,
    pub tempo: u32,
    pub mood: &'static str,
    pub timbre: Timbre,
    pub warmth: f32,
    pub seed: u64,
    /// Rhythmic density, 0 (sparse) to 2 (busy).
    pub level: usize,
    /// The root of each bar's chord, as a scale degree.
    pub chords: Vec<i32>,
    pub melody: Vec<Note>,
    /// The scale degree of each melody note (what the tests check the contour on).
    #[cfg_attr(not(test), allow(dead_code))]
    pub degrees: Vec<i32>,
    /// The index in `melody` of each phrase's last note.
    #[cfg_attr(not(test), allow(dead_code))]
    pub phrase_ends: Vec<usize>,
    pub bass: Vec<Note>,
    pub pad: Vec<Note>,
    pub drums: Vec<Hit>,
}

const PITCH_NAMES_MAJOR: [&str; 12] = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
const PITCH_NAMES_MINOR: [&str; 12] = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"];

impl Score {
    pub fn key(&self) -> String {
        match self.mode {
            Mode::Major => format!("{} major", PITCH_NAMES_MAJOR[self.tonic as usize]),
            Mode::Minor => format!("{} minor", PITCH_NAMES_MINOR[self.tonic as usize]),
        }
    }

    pub fn seconds_per_beat(&self) -> f64 {
        60.0 / f64::from(self.tempo)
    }

    pub fn duration_seconds(&self) -> f64 {
        f64::from(BARS * BEATS_PER_BAR) * self.seconds_per_beat() + TAIL_SECONDS
    }

    /// The MIDI note of a melody scale degree (any integer; 7 is the tonic an octave up).
    pub fn melody_midi(&self, degree: i32) -> i32 {
        // The tonic between A3 and G#4, so the tune sits where a voice would sing it.
        let tonic = if self.tonic <= 8 { 60 + self.tonic } else { 48 + self.tonic };
        tonic + degree_semitones(self.mode, degree)
    }
}

pub(super) fn degree_semitones(mode: Mode, degree: i32) -> i32 {
    12 * degree.div_euclid(7) + mode.scale()[degree.rem_euclid(7) as usize]
}

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
