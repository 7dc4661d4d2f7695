//! The vocabulary of the product, free of IO: kinds, styles, statuses, credit entries.

use serde::{Deserialize, Serialize};

/// What a generation produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationKind {
    Portrait,
    Music,
    Sculpture,
}

impl GenerationKind {
    pub const ALL: [GenerationKind; 3] = [GenerationKind::Portrait, GenerationKind::Music, GenerationKind::Sculpture];

    pub fn as_str(self) -> &'static str {
        match self {
            GenerationKind::Portrait => "portrait",
            GenerationKind::Music => "music",
            GenerationKind::Sculpture => "sculpture",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Where a generation is in its life. Terminal states never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationStatus {
    Queued,
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl GenerationStatus {
    pub const ALL: [GenerationStatus; 6] = [
        GenerationStatus::Queued,
        GenerationStatus::Starting,
        GenerationStatus::Processing,
        GenerationStatus::Succeeded,
        GenerationStatus::Failed,
        GenerationStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GenerationStatus::Queued => "queued",
            GenerationStatus::Starting => "starting",
            GenerationStatus::Processing => "processing",
            GenerationStatus::Succeeded => "succeeded",
            GenerationStatus::Failed => "failed",
            GenerationStatus::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, GenerationStatus::Succeeded | GenerationStatus::Failed | GenerationStatus::Canceled)
    }
}

/// One style of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Style {
    pub kind: GenerationKind,
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// Cost in credits, held at creation and charged when the work starts.
    pub credits: i64,
}

/// The styles the local studio can produce today.
pub const CATALOGUE: &[Style] = &[
    Style {
        kind: GenerationKind::Portrait,
        id: "watercolor",
        name: "Watercolor",
        description: "Soft washes of flattened colour on textured paper, with darkened pigment edges.",
        credits: 4,
    },
    Style {
        kind: GenerationKind::Portrait,
        id: "pencil_sketch",
        name: "Pencil sketch",
        description: "A graphite drawing: colour dodge of the inverted blur, with hatching on paper grain.",
        credits: 3,
    },
    Style {
        kind: GenerationKind::Portrait,
        id: "pop_art",
        name: "Pop art",
        description: "A 2x2 screen-print grid, each panel posterised to its own bold palette.",
        credits: 5,
    },
    Style {
        kind: GenerationKind::Portrait,
        id: "oil_paint",
        name: "Oil paint",
        description: "Brush strokes from a Kuwahara filter: texture flattened into strokes, edges kept sharp, on canvas.",
        credits: 6,
    },
    Style {
        kind: GenerationKind::Portrait,
        id: "pixel_art",
        name: "Pixel art",
        description: "About 48 pixels across in a palette of 10 colours chosen from the photo, with dark outlines.",
        credits: 3,
    },
    Style {
        kind: GenerationKind::Portrait,
        id: "stained_glass",
        name: "Stained glass",
        description: "Irregular panes of glowing flat colour joined by dark lead lines.",
        credits: 5,
    },
    Style {
        kind: GenerationKind::Music,
        id: "pet_theme",
        name: "Pet theme",
        description: "A half-minute to one-minute synthesised tune (WAV) whose key, tempo, mood and melody are read from the photo's colours, light and shapes.",
        credits: 4,
    },
    Style {
        kind: GenerationKind::Sculpture,
        id: "relief",
        name: "Relief",
        description: "A 100 mm plaque to 3D-print (STL and GLB): the pet, told from its background by colour and \
                      texture (a centred oval when it fills the photo), raised in rounded relief with detail from \
                      the photo's shading.",
        credits: 8,
    },
];

/// Finds a style of the given kind.
pub fn find_style(kind: GenerationKind, style: &str) -> Option<&'static Style> {
    CATALOGUE.iter().find(|s| s.kind == kind && s.id == style)
}

/// The kinds of entries in the append-only credit ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Credits given for free (starter credits, an operator's grant).
    Grant,
    /// Credits bought.
    Purchase,
    /// Credits set aside for a generation that has not started.
    Hold,
    /// The held credits, taken when the generation starts.
    Charge,
    /// A hold given back (cancel before start, failure before charge).
    Release,
    /// A charge given back (failure after the charge).
    Refund,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Grant => "grant",
            LedgerKind::Purchase => "purchase",
            LedgerKind::Hold => "hold",
            LedgerKind::Charge => "charge",
            LedgerKind::Release => "release",
            LedgerKind::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Grant, Self::Purchase, Self::Hold, Self::Charge, Self::Release, Self::Refund]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// Why a generation failed, as shown to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GenerationError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in GenerationKind::ALL {
            assert_eq!(GenerationKind::parse(k.as_str()), Some(k));
        }
        for s in GenerationStatus::ALL {
            assert_eq!(GenerationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(GenerationKind::parse("video"), None);
    }

    #[test]
    fn catalogue_has_at_least_two_portrait_styles_with_positive_costs() {
        let portraits: Vec<_> = CATALOGUE.iter().filter(|s| s.kind == GenerationKind::Portrait).collect();
        assert!(portraits.len() >= 2);
        assert!(CATALOGUE.iter().all(|s| s.credits > 0));
        assert!(find_style(GenerationKind::Portrait, "watercolor").is_some());
        assert!(find_style(GenerationKind::Music, "watercolor").is_none());
        assert!(find_style(GenerationKind::Music, "pet_theme").is_some());
    }
}
