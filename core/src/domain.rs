//! The vocabulary of the product, free of IO: kinds, styles, statuses, credit entries.

use serde::{Deserialize, Serialize};

/// A value read from text (a row, a query string) that names no variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// An enum stored and sent as text: `as_str`, `parse`, `ALL`, and `TryFrom<String>` so
/// rows decode straight into it (`#[sqlx(try_from = "String")]`).
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;

            fn try_from(text: String) -> Result<Self, UnknownValue> {
                Self::parse(&text).ok_or(UnknownValue { what: stringify!($name), value: text })
            }
        }
    };
}

text_enum! {
    /// What a generation produces.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum GenerationKind {
        Portrait = "portrait",
        Music = "music",
        Sculpture = "sculpture",
    }
}

text_enum! {
    /// Where a generation is in its life. Terminal states never change.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum GenerationStatus {
        Queued = "queued",
        Starting = "starting",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl GenerationStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, GenerationStatus::Succeeded | GenerationStatus::Failed | GenerationStatus::Canceled)
    }
}

text_enum! {
    /// What a stored object holds; it decides the object's key and expiry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum StoredObjectKind {
        /// A user's photo.
        Upload = "upload",
        /// A generated file.
        Output = "output",
        /// A copy of a generated file in the user's gallery.
        Gallery = "gallery",
        /// The user's profile picture, copied from the identity provider at sign-in.
        Picture = "picture",
        /// An access export's archive, downloadable by its owner until `EXPORT_TTL`.
        Export = "export",
    }
}

text_enum! {
    /// Where a stored object is in its life: served while `Active` and unexpired,
    /// `Deleting` once the purge claimed it, `Deleted` once its bytes are gone (the row
    /// stays so downloads answer 410).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum ObjectState {
        Active = "active",
        Deleting = "deleting",
        Deleted = "deleted",
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

text_enum! {
    /// The kinds of entries in the append-only credit ledger.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum LedgerKind {
        /// Credits given for free (starter credits, an operator's grant).
        Grant = "grant",
        /// Credits bought.
        Purchase = "purchase",
        /// Credits set aside for a generation that has not started.
        Hold = "hold",
        /// The held credits, taken when the generation starts.
        Charge = "charge",
        /// A hold given back (cancel before start, failure before charge).
        Release = "release",
        /// A charge given back (failure after the charge).
        Refund = "refund",
    }
}

/// Why a generation failed, as shown to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
        for k in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(GenerationKind::parse("video"), None);
        assert_eq!(
            StoredObjectKind::try_from("archive".to_owned()),
            Err(UnknownValue { what: "StoredObjectKind", value: "archive".into() })
        );
        assert_eq!(ObjectState::try_from("active".to_owned()), Ok(ObjectState::Active));
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

text_enum! {
    /// The events webhooks carry (`type` in the payload).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum EventType {
        GenerationStarted = "generation.started",
        GenerationProgress = "generation.progress",
        GenerationSucceeded = "generation.succeeded",
        GenerationFailed = "generation.failed",
        GenerationCanceled = "generation.canceled",
        PrivacyExportReady = "privacy_export.ready",
    }
}

text_enum! {
    /// What a privacy request asks for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PrivacyKind {
        /// A copy of the person's data (access and portability).
        Export = "export",
        /// The account and its data removed.
        Deletion = "deletion",
    }
}

text_enum! {
    /// Where a privacy request stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PrivacyStatus {
        Received = "received",
        InProgress = "in_progress",
        Completed = "completed",
        Failed = "failed",
    }
}

text_enum! {
    /// What a per-generation `webhook_events_filter` names (Replicate's words).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum GenerationEventFilter {
        Started = "started",
        Progress = "progress",
        Completed = "completed",
    }
}

impl GenerationEventFilter {
    /// Whether this filter word lets `event` through.
    pub fn admits(self, event: EventType) -> bool {
        match self {
            GenerationEventFilter::Started => event == EventType::GenerationStarted,
            GenerationEventFilter::Progress => event == EventType::GenerationProgress,
            GenerationEventFilter::Completed => matches!(
                event,
                EventType::GenerationSucceeded | EventType::GenerationFailed | EventType::GenerationCanceled
            ),
        }
    }
}

/// Whether one style of a kind served by model servers can run now, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelAvailability {
    pub kind: GenerationKind,
    pub style: String,
    pub available: bool,
    /// For operators: the servers' states (`http://gpu-1:5000 ready, …`).
    pub detail: String,
}
