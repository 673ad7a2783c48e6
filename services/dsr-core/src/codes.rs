//! Code lists. Where the DCI (spdci) standards define one (sex, marital status, vital events)
//! the symbols are DCI's, letter for letter, so a DCI client and dsr mean the same thing; the
//! others follow the international classification named on each list. The Avro enums in
//! `schemas/` carry the same symbols in the same order (a test in `dsr-contracts` checks it).

use serde::{Deserialize, Serialize};

/// A closed list of codes with stable text symbols (the Avro enum symbols).
pub trait CodeList: Sized + Copy + 'static {
    /// The Avro enum's name.
    const NAME: &'static str;
    /// Every value, in symbol order.
    const ALL: &'static [Self];
    fn symbol(self) -> &'static str;
    fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.symbol() == symbol)
    }
    fn symbols() -> Vec<&'static str> {
        Self::ALL.iter().map(|c| c.symbol()).collect()
    }
}

macro_rules! code_list {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $sym:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $sym)] $variant),+
        }

        impl CodeList for $name {
            const NAME: &'static str = stringify!($name);
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn symbol(self) -> &'static str {
                match self { $(Self::$variant => $sym),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.symbol())
            }
        }
    };
}

code_list!(
    /// DCI `Sex` (FHIR administrative gender).
    Sex { Male = "male", Female = "female", Other = "other", Unknown = "unknown" }
);

code_list!(
    /// DCI `MaritalStatus` (FHIR marital status).
    MaritalStatus {
        /// Never married.
        NeverMarried = "S",
        /// A current marriage contract is active.
        Married = "M",
        /// The spouse has died.
        Widowed = "W",
        /// Declared null.
        Annulled = "A",
        Divorced = "D",
        LegallySeparated = "L",
        /// Not presently married; history unknown.
        Unmarried = "U",
    }
);

code_list!(
    /// DCI `VitalEvents`.
    VitalEvent {
        LiveBirth = "live_birth", Death = "death", FetalDeath = "fetal_death",
        Marriage = "marriage", Divorce = "divorce", Adoption = "adoption",
    }
);

code_list!(
    /// Relationship of a member to the household head (DCI Group `relationship` practice,
    /// UN Principles and Recommendations for Population Censuses).
    Relationship {
        Head = "head", Spouse = "spouse", Child = "child", Grandchild = "grandchild",
        Parent = "parent", Sibling = "sibling", OtherRelative = "other_relative",
        NonRelative = "non_relative",
    }
);

code_list!(
    /// Highest education level attained (ISCED 2011 levels, grouped).
    EducationLevel {
        /// No schooling / early childhood (ISCED 0).
        None = "none",
        /// ISCED 1.
        Primary = "primary",
        /// ISCED 2.
        LowerSecondary = "lower_secondary",
        /// ISCED 3.
        UpperSecondary = "upper_secondary",
        /// ISCED 4-5.
        PostSecondary = "post_secondary",
        /// ISCED 6-8.
        Tertiary = "tertiary",
    }
);

code_list!(
    /// Employment status (ILO ICSE-18 and labour-force status, grouped).
    EmploymentStatus {
        Employee = "employee", SelfEmployed = "self_employed", Employer = "employer",
        ContributingFamilyWorker = "contributing_family_worker", Unemployed = "unemployed",
        /// Student, retired, homemaker, too young or unable to work.
        OutOfLabourForce = "out_of_labour_force",
    }
);

code_list!(
    /// Functional domain of a disability (Washington Group Short Set).
    DisabilityType {
        Seeing = "seeing", Hearing = "hearing", Walking = "walking", Cognition = "cognition",
        SelfCare = "self_care", Communication = "communication", Multiple = "multiple",
    }
);

code_list!(
    /// Severity of a functional limitation (Washington Group response categories).
    DisabilitySeverity {
        None = "none", SomeDifficulty = "some_difficulty",
        ALotOfDifficulty = "a_lot_of_difficulty", CannotDoAtAll = "cannot_do_at_all",
    }
);

code_list!(
    /// Where reported income comes from.
    IncomeSource {
        Wages = "wages", SelfEmployment = "self_employment", Agriculture = "agriculture",
        Pension = "pension", Remittances = "remittances", SocialTransfer = "social_transfer",
        Other = "other",
    }
);

code_list!(
    /// The period an income amount covers.
    IncomePeriod { Monthly = "monthly", Quarterly = "quarterly", Annual = "annual" }
);

code_list!(
    /// Main material of the dwelling's walls (census practice).
    WallMaterial {
        Natural = "natural", Rudimentary = "rudimentary", Finished = "finished",
    }
);

code_list!(
    /// Main drinking-water source (WHO/UNICEF JMP ladder).
    WaterSource {
        Piped = "piped", ImprovedOther = "improved_other", Unimproved = "unimproved",
        SurfaceWater = "surface_water",
    }
);

code_list!(
    /// Sanitation facility (WHO/UNICEF JMP ladder).
    Sanitation {
        Safely = "safely_managed", Basic = "basic", Limited = "limited",
        Unimproved = "unimproved", OpenDefecation = "open_defecation",
    }
);

code_list!(
    /// Dwelling tenure.
    Tenure { Owned = "owned", Rented = "rented", RentFree = "rent_free", Informal = "informal" }
);

code_list!(
    /// Hazard behind a shock (UNDRR hazard classification, grouped).
    HazardType {
        Drought = "drought", Flood = "flood", Cyclone = "cyclone", Earthquake = "earthquake",
        Landslide = "landslide", Epidemic = "epidemic", Conflict = "conflict",
        PriceShock = "price_shock", Fire = "fire", Other = "other",
    }
);

code_list!(
    /// Severity of an area-wide shock (HSNP-style alert levels).
    ShockSeverity { Moderate = "moderate", Severe = "severe", Extreme = "extreme" }
);

code_list!(
    /// Damage a household suffered in a shock.
    DamageLevel {
        None = "none", Minor = "minor", Major = "major", Destroyed = "destroyed",
    }
);

code_list!(
    /// How a household record was collected.
    RegistrationSource {
        Survey = "survey", OnDemand = "on_demand", CivilRegistration = "civil_registration",
        Migration = "migration",
    }
);

code_list!(
    /// Household or member fields a caseworker may correct with a `DataCorrection`.
    CorrectableField {
        BirthDate = "birth_date", Sex = "sex", Relationship = "relationship",
        EducationLevel = "education_level", MonthlyIncome = "monthly_income",
        Area = "area", WallMaterial = "wall_material", WaterSource = "water_source",
        Sanitation = "sanitation", Electricity = "electricity",
    }
);
