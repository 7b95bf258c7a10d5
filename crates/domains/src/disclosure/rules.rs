//! The disclosure rules file (`mappings/disclosure.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::Channel;
use crate::record::Category;

/// A rules file problem: the operator's.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureRules {
    channels: BTreeMap<Channel, ChannelRules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRules {
    /// Categories that may go out on this channel.
    pub categories: Vec<Category>,
    /// Fields holding personal ID numbers, masked as `440104**********39`. `subject.id` is masked
    /// only when the subject is an individual.
    #[serde(default)]
    pub mask_resident_id: Vec<String>,
    /// Fields holding phone numbers, masked as `138****5678`.
    #[serde(default)]
    pub mask_phone: Vec<String>,
    /// Fields never sent on this channel.
    #[serde(default)]
    pub drop_fields: Vec<String>,
    /// Penalties whose types are all in this list are not sent (LS Art. 27: 警告, 通报批评).
    #[serde(default)]
    pub withhold_penalties_only_of: Vec<String>,
    /// Mask anything in content text that looks like a resident ID or mobile number.
    #[serde(default)]
    pub scan_personal_data: bool,
}

/// The shipped rules, used when the configured file does not exist.
pub const BUILTIN: &str = include_str!("../../../../mappings/rules/disclosure.toml");

impl DisclosureRules {
    pub fn parse(path: &str, text: &str) -> Result<Self, RulesError> {
        let rules: DisclosureRules = toml::from_str(text).map_err(|e| RulesError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        if !rules.channels.contains_key(&Channel::PublicNotice) {
            return Err(RulesError::Invalid {
                path: path.into(),
                message: "[channels.public_notice] is required".into(),
            });
        }
        Ok(rules)
    }

    pub fn load(path: &Path) -> Result<Self, RulesError> {
        if !path.exists() {
            return Self::builtin();
        }
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn builtin() -> Result<Self, RulesError> {
        Self::parse("built-in disclosure.toml", BUILTIN)
    }

    pub fn channel(&self, channel: Channel) -> Option<&ChannelRules> {
        self.channels.get(&channel)
    }
}
