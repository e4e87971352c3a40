//! Indicators of compromise: STIX 2.1 bundles loaded into fast matchers.
