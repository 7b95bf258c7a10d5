//! Credit subjects and their identifiers (GD Art. 4, LS Art. 4, LS Art. 14).
//!
//! Owns the rules that make an identifier valid: the unified social credit code (统一社会信用代码,
//! GB 32100-2015) for institutions and the resident ID number (居民身份证号码, GB 11643-1999) and the
//! other 双公示 ID types (01-05) for individuals, and the 6-digit administrative division code.
//! Parse, don't validate: a [`Uscc`], [`ResidentId`] or [`RegionCode`] can only be built valid, so
//! the rest of the gateway never re-checks them.
//!
//! Never does: log or echo an identifier. Error messages name the rule that failed, never the value,
//! because resident ID numbers are personal information.
//!
//! Invariants: an identifier's text is stored upper-cased and trimmed; codes on the operator's
//! exception list (real codes issued in early pilot areas that fail the check) are accepted as
//! written, see [`IdentifierExceptions`].

mod ids;

pub use ids::{
    mask_middle, IdentifierError, IdentifierExceptions, OtherPersonalId, RegionCode, ResidentId,
    SubjectId, Uscc,
};

use serde::{Deserialize, Serialize};

/// Institution or individual (GD Art. 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Institution,
    Individual,
}

/// The subject's role in the medical-insurance relationship (GD Art. 4, LS Art. 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectRole {
    DesignatedMedicalInstitution,
    DesignatedRetailPharmacy,
    InsuredEmployer,
    CommercialInsurer,
    HandlingAgency,
    OtherEnterprise,
    Physician,
    Pharmacist,
    Nurse,
    OtherProfessional,
    LegalRepresentative,
    ActualController,
    Principal,
    ResponsiblePerson,
    InsuredPerson,
    OtherIndividual,
}

impl SubjectRole {
    pub const ALL: [SubjectRole; 16] = [
        Self::DesignatedMedicalInstitution,
        Self::DesignatedRetailPharmacy,
        Self::InsuredEmployer,
        Self::CommercialInsurer,
        Self::HandlingAgency,
        Self::OtherEnterprise,
        Self::Physician,
        Self::Pharmacist,
        Self::Nurse,
        Self::OtherProfessional,
        Self::LegalRepresentative,
        Self::ActualController,
        Self::Principal,
        Self::ResponsiblePerson,
        Self::InsuredPerson,
        Self::OtherIndividual,
    ];

    /// Which kind of subject can hold this role.
    pub fn kind(self) -> SubjectKind {
        match self {
            Self::DesignatedMedicalInstitution
            | Self::DesignatedRetailPharmacy
            | Self::InsuredEmployer
            | Self::CommercialInsurer
            | Self::HandlingAgency
            | Self::OtherEnterprise => SubjectKind::Institution,
            _ => SubjectKind::Individual,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::DesignatedMedicalInstitution => "designated_medical_institution",
            Self::DesignatedRetailPharmacy => "designated_retail_pharmacy",
            Self::InsuredEmployer => "insured_employer",
            Self::CommercialInsurer => "commercial_insurer",
            Self::HandlingAgency => "handling_agency",
            Self::OtherEnterprise => "other_enterprise",
            Self::Physician => "physician",
            Self::Pharmacist => "pharmacist",
            Self::Nurse => "nurse",
            Self::OtherProfessional => "other_professional",
            Self::LegalRepresentative => "legal_representative",
            Self::ActualController => "actual_controller",
            Self::Principal => "principal",
            Self::ResponsiblePerson => "responsible_person",
            Self::InsuredPerson => "insured_person",
            Self::OtherIndividual => "other_individual",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// The identifier types: `uscc` for institutions, the 双公示 personal ID types 01-05 for individuals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    Uscc,
    ResidentId,
    Passport,
    HkMacaoPermit,
    TaiwanPermit,
    ForeignPermanentResident,
}

impl IdType {
    pub const ALL: [IdType; 6] = [
        Self::Uscc,
        Self::ResidentId,
        Self::Passport,
        Self::HkMacaoPermit,
        Self::TaiwanPermit,
        Self::ForeignPermanentResident,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Uscc => "uscc",
            Self::ResidentId => "resident_id",
            Self::Passport => "passport",
            Self::HkMacaoPermit => "hk_macao_permit",
            Self::TaiwanPermit => "taiwan_permit",
            Self::ForeignPermanentResident => "foreign_permanent_resident",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Which kind of subject this identifier identifies (LS Art. 14).
    pub fn kind(self) -> SubjectKind {
        match self {
            Self::Uscc => SubjectKind::Institution,
            _ => SubjectKind::Individual,
        }
    }

    /// Personal identifiers are masked on public channels and never logged.
    pub fn is_personal(self) -> bool {
        self.kind() == SubjectKind::Individual
    }
}
