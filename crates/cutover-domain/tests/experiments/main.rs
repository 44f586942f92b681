//! Experiments checked against numbers produced elsewhere: GrowthBook's public bucketing vectors
//! and statistics computed with scipy.

mod growthbook_cases;
mod stats_fixtures;
