//! End-to-end tests of `replay` and `aotc` together; the tests live in
//! `tests/e2e/`. This library is empty: it only gives the package a target.
