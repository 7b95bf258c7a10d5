//! The 13 information categories of GD Art. 8.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// 1 信用主体登记注册基本信息
    Registration,
    /// 2 司法裁判及执行信息
    Judicial,
    /// 3 行政管理信息
    Administrative,
    /// 4 资质资格、职称和职业资格信息
    Qualification,
    /// 5 经营（活动）异常名录（状态）信息
    AbnormalOperation,
    /// 6 失信主体名单信息
    DishonestList,
    /// 7 行政约定及其履行信息
    AgreementPerformance,
    /// 8 信用承诺及其履行情况信息
    Commitment,
    /// 9 信用评价结果信息
    EvaluationResult,
    /// 10 遵守法律法规情况信息
    LawCompliance,
    /// 11 诚实守信相关荣誉信息
    Honor,
    /// 12 其他公共信用信息
    OtherPublic,
    /// 13 法律法规和国家规定的其他公共信用信息
    StatutoryOther,
}

impl Category {
    pub const ALL: [Category; 13] = [
        Self::Registration,
        Self::Judicial,
        Self::Administrative,
        Self::Qualification,
        Self::AbnormalOperation,
        Self::DishonestList,
        Self::AgreementPerformance,
        Self::Commitment,
        Self::EvaluationResult,
        Self::LawCompliance,
        Self::Honor,
        Self::OtherPublic,
        Self::StatutoryOther,
    ];

    /// The snake_case code used in the canonical record.
    pub fn code(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Judicial => "judicial",
            Self::Administrative => "administrative",
            Self::Qualification => "qualification",
            Self::AbnormalOperation => "abnormal_operation",
            Self::DishonestList => "dishonest_list",
            Self::AgreementPerformance => "agreement_performance",
            Self::Commitment => "commitment",
            Self::EvaluationResult => "evaluation_result",
            Self::LawCompliance => "law_compliance",
            Self::Honor => "honor",
            Self::OtherPublic => "other_public",
            Self::StatutoryOther => "statutory_other",
        }
    }

    /// The number in GD Art. 8 (1-13).
    pub fn number(self) -> u8 {
        Self::ALL
            .iter()
            .position(|c| *c == self)
            .map(|p| p as u8 + 1)
            .unwrap_or(0)
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The name in GD Art. 8.
    pub fn chinese_name(self) -> &'static str {
        match self {
            Self::Registration => "信用主体登记注册基本信息",
            Self::Judicial => "司法裁判及执行信息",
            Self::Administrative => "行政管理信息",
            Self::Qualification => "资质资格、职称和职业资格信息",
            Self::AbnormalOperation => "经营（活动）异常名录（状态）信息",
            Self::DishonestList => "失信主体名单信息",
            Self::AgreementPerformance => "行政约定及其履行信息",
            Self::Commitment => "信用承诺及其履行情况信息",
            Self::EvaluationResult => "信用评价结果信息",
            Self::LawCompliance => "遵守法律法规情况信息",
            Self::Honor => "诚实守信相关荣誉信息",
            Self::OtherPublic => "其他公共信用信息",
            Self::StatutoryOther => "法律法规和国家规定的其他公共信用信息",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_categories_numbered_as_in_gd_art_8() {
        assert_eq!(Category::ALL.len(), 13);
        assert_eq!(Category::Registration.number(), 1);
        assert_eq!(Category::DishonestList.number(), 6);
        assert_eq!(Category::StatutoryOther.number(), 13);
        for c in Category::ALL {
            assert_eq!(Category::from_code(c.code()), Some(c));
            let via_serde: Category = serde_json::from_value(serde_json::json!(c.code())).unwrap();
            assert_eq!(via_serde, c);
        }
    }
}
